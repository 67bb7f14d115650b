/**
 * Workers that will never run, on the real node, judged by the sweep's watch (scheduler/sweep/watch.ts)
 * against the real API server, kubelet and Job controller, with the Stacks API stand-in: each is failed
 * in Buildkite once, with the reason the cluster gave, within seconds, and no second Job is made. The
 * figures (pod created → Buildkite job failed) are printed; no test is timed.
 */
import * as assert from "assert";
import { type ClusterState } from "../../k8s/local/cluster";
import { AgentApiStandIn } from "../../k8s/local/agentApiStandIn";
import { POD_GATEWAY_IP } from "../../k8s/local/node";
import { type StandIn, startStacksApi } from "../../k8s/local/stacksApiStandIn";
import { SWEEPER_IDENTITY } from "../../k8s/local/awsIdentities";
import { stacksApi } from "../../scheduler/clients/stacksApi";
import { createEventHandler } from "../../scheduler/schedule/lambda";
import { createSweeper, eventFromStacksJob } from "../../scheduler/sweep/lambda";
import { aStacksJob } from "../helpers/builders";
import { creatorAs, deleteNamespace, deployStack, type DeployedStack, LOCAL_WORKER_IMAGES } from "../helpers/deploy";
import { adminConfig, k8sClient, localClusterWithNode } from "../helpers/localCluster";

const RUN = Math.random().toString(36).slice(2, 7);
const GRACE_MS = 30_000;

const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.ceil((p / 100) * xs.length) - 1];

describe("workers that will never run, judged by the sweep's watch (real node)", function () {
    let state: ClusterState;
    let stacks: StandIn;
    let agentApi: AgentApiStandIn;
    const namespaces: string[] = [];

    before(async function () {
        state = await localClusterWithNode(this);
        agentApi = await new AgentApiStandIn().start(POD_GATEWAY_IP);
        stacks = await startStacksApi(undefined, (u) => agentApi.jobs.get(u)?.state);
    });
    after(async function () {
        this.timeout(60_000);
        await stacks?.close();
        await agentApi?.stop();
        if (state) for (const ns of namespaces) await deleteNamespace(state, ns);
    });

    async function stack(name: string, queue: Record<string, unknown>, extra: Record<string, unknown> = {}) {
        const namespace = `${name}-${RUN}`;
        namespaces.push(namespace);
        return deployStack(
            state,
            namespace,
            {
                ...LOCAL_WORKER_IMAGES,
                agentToken: agentApi.registrationToken,
                env: { BUILDKITE_AGENT_ENDPOINT: agentApi.endpoint },
                backoffLimit: 0,
                queues: { dynamic: { dind: false, ...queue } },
                ...extra,
            },
            "real",
        );
    }
    async function schedule(s: DeployedStack, n: number): Promise<string[]> {
        const uuids: string[] = [];
        for (let i = 0; i < n; i++) {
            const job = aStacksJob("dynamic");
            const d = await createEventHandler(s.settings, creatorAs(state), () => {})(eventFromStacksJob(job));
            assert.strictEqual(d.outcome, "created", d.reason);
            uuids.push(job.id);
        }
        return uuids;
    }
    /** Holds the sweep's watch (as the sweep Lambda does between listings) until every job is failed in Buildkite, or `maxMs`. */
    function watchUntilFailed(s: DeployedStack, uuids: string[], maxMs: number) {
        return watchUntil(s, () => uuids.every((u) => stacks.finished.has(u)), maxMs);
    }
    async function watchUntil(s: DeployedStack, done: () => boolean, maxMs: number) {
        const lines: string[] = [];
        const sweeper = createSweeper(
            s.settings,
            stacksApi(() => stacks.token, { endpoint: stacks.endpoint }),
            creatorAs(state, SWEEPER_IDENTITY),
            "scaledkite-test",
            (l) => lines.push(l),
            { pendingTimeoutMs: 15 * 60_000, startFailureGraceMs: GRACE_MS },
        );
        const until = Date.now() + maxMs;
        const stop = new AbortController();
        const watching = sweeper.watch(until, { signal: stop.signal });
        while (Date.now() < until && !done()) await new Promise((r) => setTimeout(r, 500));
        // Two more seconds of watching: nothing is failed twice.
        await new Promise((r) => setTimeout(r, 2_000));
        stop.abort();
        return { lines, report: await watching };
    }
    async function workerJobs(namespace: string): Promise<string[]> {
        const list = await adminConfig(state).makeApiClient(k8sClient().BatchV1Api).listNamespacedJob({ namespace });
        return list.items.filter((j) => !j.metadata?.deletionTimestamp).map((j) => j.metadata!.name!);
    }
    function sinceCreated(lines: string[], uuids: string[]): number[] {
        return lines
            .map((l) => JSON.parse(l) as { outcome?: string; jobUuid?: string; sinceCreatedMs?: number })
            .filter((l) => l.outcome === "unrunnable" && uuids.includes(l.jobUuid!) && l.sinceCreatedMs !== undefined)
            .map((l) => l.sinceCreatedMs!);
    }

    it("an image that cannot be pulled: 10 workers, each failed once after the 30 s grace and two failed pulls, with the registry's words", async function () {
        this.timeout(240_000);
        const s = await stack("unpullable", { image: "buildkite/agent:does-not-exist" });
        const uuids = await schedule(s, 10);
        const { lines } = await watchUntilFailed(s, uuids, 150_000);
        for (const u of uuids) {
            assert.match(
                stacks.finished.get(u) ?? "(not failed)",
                /^Scaledkite: the worker could not start: (ErrImagePull|ImagePullBackOff) for container agent \(image "buildkite\/agent:does-not-exist"\), \d+ pulls failed in \d+ s since the pod started/,
            );
            assert.strictEqual(stacks.finishCalls.get(u), 1, "failed once");
        }
        const ms = sinceCreated(lines, uuids);
        assert.strictEqual(ms.length, 10, lines.join("\n"));
        assert.ok(Math.min(...ms) >= GRACE_MS, `none before the grace: ${ms}`);
        console.log(
            `      unpullable image, pod created → Buildkite job failed over 10 workers: p50 ${(percentile(ms, 50) / 1000).toFixed(1)} s, max ${(Math.max(...ms) / 1000).toFixed(1)} s (grace ${GRACE_MS / 1000} s)`,
        );
        assert.deepStrictEqual(await workerJobs(s.namespace), [], "their Jobs are deleted; none made again");
    });

    it("a pod the cluster refuses (the namespace enforces Pod Security `restricted`): failed with the API server's words", async function () {
        this.timeout(180_000);
        const s = await stack("refused", {});
        const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
        await core.patchNamespace(
            {
                name: s.namespace,
                body: { metadata: { labels: { "pod-security.kubernetes.io/enforce": "restricted" } } },
            },
            k8sClient().setHeaderOptions("Content-Type", k8sClient().PatchStrategy.MergePatch),
        );
        const [uuid] = await schedule(s, 1);
        const created = Date.now();
        await watchUntilFailed(s, [uuid], 120_000);
        assert.match(
            stacks.finished.get(uuid) ?? "(not failed)",
            /^Scaledkite: the cluster refused the worker pod: pods "[^"]+" is forbidden: violates PodSecurity "restricted:[^"]+": /,
        );
        console.log(
            `      refused pod, Job created → Buildkite job failed: ${((stacks.finishedAt.get(uuid)! - created) / 1000).toFixed(1)} s`,
        );
        assert.deepStrictEqual(await workerJobs(s.namespace), []);
    });

    it("an agent that exits 1 before it acquires its job (its token refused): failed at once with the container's exit", async function () {
        this.timeout(180_000);
        const s = await stack("agent-exit", {}, { agentToken: "not-the-registration-token" });
        const [uuid] = await schedule(s, 1);
        const { lines } = await watchUntilFailed(s, [uuid], 120_000);
        assert.match(
            stacks.finished.get(uuid) ?? "(not failed)",
            /^Scaledkite: the worker failed before it ran the job: container agent exited 1 \(Error\)/,
        );
        console.log(
            `      agent exit 1 before acquiring, pod created → Buildkite job failed: ${(sinceCreated(lines, [uuid])[0] / 1000).toFixed(1)} s`,
        );
        assert.deepStrictEqual(await workerJobs(s.namespace), []);
    });

    it("a dind that cannot start (an image without dockerd): its job failed while still scheduled, or told why once running", async function () {
        // dind starts beside the agent (core/dind.ts), and the pod does not restart it: it exits at
        // once, while the agent may already have taken the job. A stack may not finish a job an agent
        // has (Buildkite's Stacks API), so then the watch says why on the job's timeline, and the
        // step's own wait for dockerd ends it.
        this.timeout(240_000);
        const s = await stack("dind-crash", { dind: "privileged", dindImage: LOCAL_WORKER_IMAGES.image });
        const [uuid] = await schedule(s, 1);
        agentApi.addJob(uuid, { queue: "dynamic", command: "docker version" });
        const crash =
            /^Scaledkite: container dind of the worker exited \d+( \w+)? before the agent did, so the build has no docker/;
        const told = () => stacks.notifications.find((n) => n.job_uuid === uuid && crash.test(n.detail));
        const { lines, report } = await watchUntil(s, () => stacks.finished.has(uuid) || told() !== undefined, 180_000);
        const outcome = stacks.finished.get(uuid) ?? told()?.detail ?? `(neither) ${JSON.stringify(report)}`;
        assert.match(outcome, crash);
        if (stacks.finished.has(uuid)) {
            assert.strictEqual(agentApi.jobs.get(uuid)!.acquireAttempts, 0, "no agent got to it");
            assert.deepStrictEqual(await workerJobs(s.namespace), []);
        } else assert.notStrictEqual(agentApi.jobs.get(uuid)!.state, "scheduled", "an agent has it");
        const at = JSON.parse(lines.find((l) => l.includes(uuid))!) as { outcome: string };
        console.log(`      dind that cannot start (${at.outcome}): ${outcome}`);
    });

    it("a worker created after the watch began is seen through the real server's watch", async function () {
        // Drops, resumption and 410 Gone are in test/sweep/watch.test.ts with a fake.
        this.timeout(120_000);
        const s = await stack("watch-sees", { image: "buildkite/agent:does-not-exist" });
        const sweeper = createSweeper(
            s.settings,
            stacksApi(() => stacks.token, { endpoint: stacks.endpoint }),
            creatorAs(state, SWEEPER_IDENTITY),
            "scaledkite-test",
            () => {},
            { pendingTimeoutMs: 15 * 60_000, startFailureGraceMs: 0 },
        );
        const stop = new AbortController();
        const watching = sweeper.watch(Date.now() + 90_000, { signal: stop.signal });
        await new Promise((r) => setTimeout(r, 2_000));
        const [uuid] = await schedule(s, 1);
        const deadline = Date.now() + 90_000;
        while (!stacks.finished.has(uuid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
        stop.abort();
        const report = await watching;
        assert.ok(stacks.finished.has(uuid), JSON.stringify(report));
        assert.ok(report && report.events > 0 && report.lists === 2 && report.drops === 0, JSON.stringify(report));
    });
});
