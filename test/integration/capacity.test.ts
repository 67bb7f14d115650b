/**
 * More workers than this machine's 2 cores can run (so on the pod runner's stand-in node, as
 * DEVELOPERS.md lists): a burst that waits for capacity is never failed while a node may still come,
 * a full node takes the higher-priority build's worker first (its PriorityClass), and two stacks
 * serving one queue start exactly one worker per job, because each reserves the job through the
 * Stacks API (stand-in, with Buildkite's rate limits) before it makes a worker. The real API server,
 * kube-scheduler and Job controller decide everything else.
 */
import * as assert from "assert";
import { type ClusterState } from "../../k8s/local/cluster";
import { ANNOTATION_RUN_SECONDS, LOCAL_NODE } from "../../k8s/local/podRunner";
import { type StandIn, startStacksApi } from "../../k8s/local/stacksApiStandIn";
import { SWEEPER_IDENTITY } from "../../k8s/local/awsIdentities";
import { stacksApi } from "../../scheduler/clients/stacksApi";
import { handleBatch } from "../../scheduler/schedule/batch";
import { createEventHandler } from "../../scheduler/schedule/lambda";
import { stacksStepSource } from "../../scheduler/schedule/stepSource";
import { createSweeper, eventFromStacksJob } from "../../scheduler/sweep/lambda";
import { aStacksJob } from "../helpers/builders";
import { creatorAs, deleteNamespace, deployStack, type DeployedStack } from "../helpers/deploy";
import { adminConfig, eventually, k8sClient, localCluster } from "../helpers/localCluster";

const RUN = Math.random().toString(36).slice(2, 7);
/** The label the burst's pods need: no node has it until "capacity returns". */
const BURST_POOL = "local.scaledkite.io/burst-pool";

describe("capacity: a burst that waits, priority on a full node, and two stacks on one queue (stand-in node)", function () {
    let state: ClusterState;
    let stacks: StandIn;
    const namespaces: string[] = [];
    before(async function () {
        state = await localCluster(this);
        stacks = await startStacksApi();
    });
    after(async function () {
        this.timeout(60_000);
        await stacks?.close();
        await labelNode(null).catch(() => {});
        if (state) for (const ns of namespaces) await deleteNamespace(state, ns);
    });

    async function stack(name: string, extra: Record<string, unknown>): Promise<DeployedStack> {
        const namespace = `${name}-${RUN}`;
        namespaces.push(namespace);
        return deployStack(state, namespace, { queues: { dynamic: {} }, ...extra }, "stand-in");
    }
    async function labelNode(value: string | null) {
        await adminConfig(state)
            .makeApiClient(k8sClient().CoreV1Api)
            .patchNode(
                { name: LOCAL_NODE, body: { metadata: { labels: { [BURST_POOL]: value } } } },
                k8sClient().setHeaderOptions("Content-Type", k8sClient().PatchStrategy.MergePatch),
            );
    }
    async function pods(namespace: string) {
        return (await adminConfig(state).makeApiClient(k8sClient().CoreV1Api).listNamespacedPod({ namespace })).items;
    }
    async function jobNames(namespace: string): Promise<string[]> {
        const list = await adminConfig(state).makeApiClient(k8sClient().BatchV1Api).listNamespacedJob({ namespace });
        return list.items.map((j) => j.metadata!.labels!["buildkite.com/job-uuid"]);
    }

    it("20 workers pending on a full cluster for 4/5 of the pending timeout: none failed, and they run when capacity returns", async function () {
        this.timeout(300_000);
        // The 15 min default, shortened to 75 s; the workers wait 60 s (12 of 15 "minutes").
        const pendingTimeoutMs = 75_000;
        const s = await stack("burst", { nodeSelector: { [BURST_POOL]: "yes" } });
        const handle = createEventHandler(s.settings, creatorAs(state), () => {});
        const jobs = Array.from({ length: 20 }, () => aStacksJob("dynamic"));
        for (const j of jobs) assert.strictEqual((await handle(eventFromStacksJob(j))).outcome, "created");
        stacks.scheduled.set("dynamic", jobs);
        const sweeper = createSweeper(
            s.settings,
            stacksApi(() => stacks.token, { endpoint: stacks.endpoint }),
            creatorAs(state, SWEEPER_IDENTITY),
            "scaledkite-burst",
            () => {},
            { pendingTimeoutMs, startFailureGraceMs: 30_000, intervalMs: 20_000 },
        );
        const started = Date.now();
        const watching = sweeper.watch(started + 60_000);
        // The per-minute sweep too, three times meanwhile (its interval shortened to 20 s).
        for (let i = 0; i < 3; i++) {
            await new Promise((r) => setTimeout(r, 20_000 - ((Date.now() - started) % 20_000)));
            const r = await sweeper();
            assert.deepStrictEqual(r.workers.failed, [], `sweep ${i + 1} failed none`);
        }
        const report = await watching;
        assert.strictEqual(report?.failed, 0, JSON.stringify(report));
        assert.ok(!jobs.some((j) => stacks.finished.has(j.id)), "no job failed in Buildkite");
        const waiting = await pods(s.namespace);
        assert.strictEqual(waiting.length, 20);
        assert.ok(
            waiting.every((p) => p.status?.conditions?.some((c) => c.type === "PodScheduled" && c.status === "False")),
            "all unschedulable",
        );
        // Capacity returns: kube-scheduler places them, and they run.
        await labelNode("yes");
        await eventually(
            "all 20 workers to run",
            async () => {
                const now = await pods(s.namespace);
                return now.filter((p) => p.status?.phase === "Running" || p.status?.phase === "Succeeded").length === 20
                    ? true
                    : undefined;
            },
            120_000,
        );
        console.log(
            `      burst: 20 workers pending ${Math.round((Date.now() - started) / 1000)} s (timeout ${pendingTimeoutMs / 1000} s), none failed; all ran once the node fit`,
        );
        await labelNode(null);
    });

    it("priority on a full cluster: kube-scheduler places the higher-priority build's worker first, and the others wait", async function () {
        this.timeout(180_000);
        const scheduling = adminConfig(state).makeApiClient(k8sClient().SchedulingV1Api);
        const classes = { low: `ci-low-${RUN}`, high: `ci-high-${RUN}` };
        await scheduling.createPriorityClass({ body: { metadata: { name: classes.low }, value: 100 } });
        await scheduling.createPriorityClass({ body: { metadata: { name: classes.high }, value: 1000 } });
        try {
            // Each worker asks 600 of the node's 1,000 CPUs, so one fits at a time; they keep running.
            const s = await stack("priority", {
                nodeSelector: { [BURST_POOL]: "yes" },
                priorityClasses: { "0": classes.low, "10": classes.high },
                resources: { command: { requests: { cpu: "600" } } },
                annotations: { [ANNOTATION_RUN_SECONDS]: "600" },
            });
            const handle = createEventHandler(s.settings, creatorAs(state), () => {});
            const low = [aStacksJob("dynamic", { priority: 0 }), aStacksJob("dynamic", { priority: 0 })];
            const high = aStacksJob("dynamic", { priority: 20 });
            // The urgent job comes last.
            for (const j of [...low, high])
                assert.strictEqual((await handle(eventFromStacksJob(j))).outcome, "created");
            // The Job controller makes the pods a moment after the Jobs.
            const highPod = await eventually(
                "the three pods",
                async () => {
                    const all = await pods(s.namespace);
                    return all.length === 3
                        ? all.find((p) => p.metadata?.labels?.["buildkite.com/job-uuid"] === high.id)
                        : undefined;
                },
                60_000,
            );
            assert.strictEqual(highPod.spec?.priorityClassName, classes.high);
            assert.strictEqual(highPod.spec?.priority, 1000, "the API server resolved the class");
            // Past kube-scheduler's longest back-off (10 s), so every pod waits in its unschedulable queue.
            await new Promise((r) => setTimeout(r, 12_000));
            await labelNode("yes");
            const placed = await eventually(
                "one worker placed",
                async () => {
                    const all = await pods(s.namespace);
                    const on = all.filter((p) => p.spec?.nodeName);
                    return on.length ? on : undefined;
                },
                60_000,
            );
            assert.deepStrictEqual(
                placed.map((p) => p.metadata!.labels!["buildkite.com/job-uuid"]),
                [high.id],
                "the high-priority worker was placed first",
            );
            // kube-scheduler tries the other two again and finds no CPU left for them.
            await eventually(
                "the other two to wait for CPU",
                async () => {
                    const rest = (await pods(s.namespace)).filter(
                        (p) => p.metadata?.labels?.["buildkite.com/job-uuid"] !== high.id,
                    );
                    const cpu = (p: (typeof rest)[number]) =>
                        !p.spec?.nodeName &&
                        p.status?.conditions?.some(
                            (c) => c.type === "PodScheduled" && /Insufficient cpu/.test(c.message ?? ""),
                        );
                    return rest.length === 2 && rest.every(cpu) ? true : undefined;
                },
                60_000,
            );
            assert.strictEqual((await pods(s.namespace)).filter((p) => p.spec?.nodeName).length, 1, "only one fits");
            console.log(
                `      priority: 3 workers for 1 slot; kube-scheduler placed the priority-20 job's (${classes.high}) first: ${placed[0].metadata!.name}`,
            );
        } finally {
            await labelNode(null);
            await scheduling.deletePriorityClass({ name: classes.low }).catch(() => {});
            await scheduling.deletePriorityClass({ name: classes.high }).catch(() => {});
        }
    });

    it("two stacks on one queue, 200 jobs, every event to both in SQS batches: exactly 200 workers, one per job, one reservation call per batch", async function () {
        this.timeout(300_000);
        const a = await stack("two-a", { stackKey: "scaledkite-a" });
        const b = await stack("two-b", { stackKey: "scaledkite-b" });
        const client = stacksApi(() => stacks.token, { endpoint: stacks.endpoint });
        const outcomes = { a: 0, b: 0, ignored: 0, other: 0 };
        const handlerOf = (s: DeployedStack, key: string, name: "a" | "b") =>
            createEventHandler(
                s.settings,
                creatorAs(state),
                (line) => {
                    const { outcome } = JSON.parse(line) as { outcome: string };
                    if (outcome === "created") outcomes[name]++;
                    else if (outcome === "ignored") outcomes.ignored++;
                    else outcomes.other++;
                },
                { steps: stacksStepSource(client, key) },
            );
        const [ha, hb] = [handlerOf(a, "scaledkite-a", "a"), handlerOf(b, "scaledkite-b", "b")];
        const jobs = Array.from({ length: 200 }, () => aStacksJob("dynamic"));
        const batch = (from: number) =>
            Array.from({ length: 10 }, (_, k) => ({
                messageId: `m${from + k}`,
                body: JSON.stringify(eventFromStacksJob(jobs[(from + k) % jobs.length])),
                eventSource: "aws:sqs",
            }));
        const requestsBefore = stacks.requests.length;
        const started = Date.now();
        // Each stack's rule delivers every event, batched by each stack's own queue: here A's batches
        // start at job 0 and B's at job 5, so half of each batch races the other stack's and half
        // was offered to one stack first.
        const failed: string[] = [];
        for (let i = 0; i < jobs.length; i += 10) {
            const [ra, rb] = await Promise.all([handleBatch(batch(i), ha), handleBatch(batch(i + 5), hb)]);
            failed.push(...[...ra.batchItemFailures, ...rb.batchItemFailures].map((f) => f.itemIdentifier));
        }
        assert.deepStrictEqual(failed, [], "no record left to retry");
        const reserveCalls = (key: string) =>
            stacks.requests
                .slice(requestsBefore)
                .filter((r) => r === `PUT /v3/stacks/${key}/scheduled-jobs/batch-reserve`).length;
        const calls = { a: reserveCalls("scaledkite-a"), b: reserveCalls("scaledkite-b") };
        assert.deepStrictEqual(calls, { a: 20, b: 20 }, "one reservation call per batch of 10 events");
        assert.deepStrictEqual(stacks.throttled, [], "under the Stacks API's 10 reserve calls a second per stack");
        const ms = Date.now() - started;
        const [inA, inB] = [await jobNames(a.namespace), await jobNames(b.namespace)];
        assert.strictEqual(inA.length + inB.length, 200, JSON.stringify(outcomes));
        assert.deepStrictEqual(
            [...new Set([...inA, ...inB])].sort(),
            jobs.map((j) => j.id).sort(),
            "one worker per job",
        );
        assert.strictEqual(outcomes.ignored, 200, "the other stack made none");
        assert.ok(outcomes.a >= 5 && outcomes.b >= 5, `both stacks took some: ${JSON.stringify(outcomes)}`);
        assert.strictEqual(outcomes.other, 0);
        // The sweep of the stack that holds none of a job does not make one either: reserved jobs leave its list.
        stacks.scheduled.set("dynamic", jobs);
        const sweepB = createSweeper(b.settings, client, creatorAs(state, SWEEPER_IDENTITY), "scaledkite-b", () => {});
        const r = await sweepB();
        assert.strictEqual(r.queues[0].created, 0);
        assert.strictEqual((await jobNames(b.namespace)).length, inB.length);
        console.log(
            `      two stacks: 200 jobs → ${inA.length} + ${inB.length} workers, ${outcomes.ignored} events ignored as reserved elsewhere, ${calls.a} + ${calls.b} reserve calls, ${(ms / 1000).toFixed(1)} s`,
        );
    });
});
