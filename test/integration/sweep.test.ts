/**
 * The sweep against the real API server and a local stand-in for Buildkite's Stacks API: lost events
 * are recovered, nothing runs twice, paused queues are left alone, rate limits and failures are
 * handled.
 */
import * as assert from "assert";
import { parseEmf } from "../helpers/emf";
import { type ClusterState } from "../../k8s/local/cluster";
import { createEventHandler } from "../../scheduler/schedule/lambda";
import { stacksApi } from "../../scheduler/clients/stacksApi";
import { createSweeper, eventFromStacksJob, keepQueuesConnected } from "../../scheduler/sweep/lambda";
import { heartbeatOffsets } from "../../scheduler/core/notices";
import { aStacksJob } from "../helpers/builders";
import { creatorAs, deleteNamespace, deployStack, type DeployedStack, type WorkerNode } from "../helpers/deploy";
import { adminConfig, eventually, k8sClient, localCluster } from "../helpers/localCluster";
import { type StandIn, startStacksApi } from "../../k8s/local/stacksApiStandIn";
import { SWEEPER_IDENTITY } from "../../k8s/local/awsIdentities";
import { UNSCHEDULABLE_LABEL } from "../../k8s/local/podRunner";
import { invokeLambda, writeLambdaPackage } from "../helpers/lambdaPackage";
import { lambdaCode } from "../helpers/pulumiProgram";
import { QUEUE_ANNOTATION } from "../../scheduler/core/names";

describe("the sweep (Stacks API stand-in, real API server)", function () {
    let state: ClusterState;
    let api: StandIn;
    const namespaces: string[] = [];
    before(async function () {
        state = await localCluster(this);
        api = await startStacksApi();
    });
    after(async function () {
        if (api) await api.close();
        if (state) for (const ns of namespaces) await deleteNamespace(state, ns);
    });

    async function stack(
        name: string,
        extra: Record<string, unknown> = {},
        node: WorkerNode = "real",
    ): Promise<DeployedStack> {
        namespaces.push(name);
        api.scheduled.clear();
        api.paused.clear();
        return deployStack(state, name, { queues: { dynamic: {}, other: {} }, ...extra }, node);
    }
    async function jobUuids(namespace: string): Promise<string[]> {
        const list = await adminConfig(state).makeApiClient(k8sClient().BatchV1Api).listNamespacedJob({ namespace });
        return list.items.map((j) => j.metadata!.labels!["buildkite.com/job-uuid"]).sort();
    }
    const sweeperFor = (s: DeployedStack, lines: string[] = []) =>
        createSweeper(
            s.settings,
            stacksApi(() => api.token, {
                endpoint: api.endpoint,
                sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
            }),
            creatorAs(state, SWEEPER_IDENTITY),
            "scaledkite-test",
            (l) => lines.push(l),
        );

    it("schedules the jobs whose events were lost, and leaves alone those that have a worker", async () => {
        const s = await stack("sweep-lost");
        const delivered = aStacksJob("dynamic");
        const lost = [aStacksJob("dynamic"), aStacksJob("dynamic"), aStacksJob("other")];
        api.scheduled.set("dynamic", [delivered, lost[0], lost[1]]);
        api.scheduled.set("other", [lost[2]]);
        assert.strictEqual(
            (await createEventHandler(s.settings, creatorAs(state), () => {})(eventFromStacksJob(delivered))).outcome,
            "created",
        );

        const lines: string[] = [];
        const report = await sweeperFor(s, lines)();
        assert.deepStrictEqual(
            report.queues.map((r) => [r.queue, r.listed, r.created, r.exists, r.failed]),
            [
                ["dynamic", 3, 2, 1, 0],
                ["other", 1, 1, 0, 0],
            ],
        );
        assert.deepStrictEqual(await jobUuids(s.namespace), [delivered, ...lost].map((j) => j.id).sort());
        assert.ok(
            api.registered.has("scaledkite-test/dynamic") && api.registered.has("scaledkite-test/other"),
            "the stack is registered per queue",
        );
        assert.ok(lines.some((l) => l.startsWith('{"via":"sweep","msg":"scaledkite.schedule","outcome":"created"')));
        // Its metrics: what it created per queue, and the workers it saw (test/metrics.test.ts reads EMF as CloudWatch does).
        const metricsOf = (msg: string, queue: string, from = lines) =>
            parseEmf(from.find((l) => JSON.parse(l).msg === msg && JSON.parse(l).queue === queue)!);
        assert.deepStrictEqual(metricsOf("scaledkite.sweep", "dynamic").metrics.SweepCreated, {
            unit: "Count",
            value: 2,
        });
        assert.deepStrictEqual(metricsOf("scaledkite.sweep", "other").dimensions, {
            Namespace: s.namespace,
            Queue: "other",
        });
        assert.deepStrictEqual(metricsOf("scaledkite.sweep.workers", "dynamic").metrics.FailedStuck, {
            unit: "Count",
            value: 0,
        });

        // The workers metric counts pods, and the Job controller makes the new Jobs' pods a moment after
        // the sweep created them; so the next sweep, once they exist, sees all three.
        const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
        await eventually(
            "the Job controller made the three pods of queue dynamic",
            async () =>
                (await core.listNamespacedPod({ namespace: s.namespace })).items.filter(
                    (p) => p.metadata?.annotations?.[QUEUE_ANNOTATION] === "dynamic",
                ).length === 3 || undefined,
        );
        const again: string[] = [];
        assert.deepStrictEqual(
            (await sweeperFor(s, again)()).queues.map((r) => r.created),
            [0, 0],
            "a second sweep creates nothing",
        );
        const workers = metricsOf("scaledkite.workers", "dynamic", again).metrics;
        assert.strictEqual(
            (workers.RunningWorkers.value as number) + (workers.PendingWorkers.value as number),
            3,
            "the three workers of queue dynamic, running or pending",
        );
    });

    it("reads every page", async () => {
        const s = await stack("sweep-pages");
        const many = Array.from({ length: 7 }, (_, i) =>
            aStacksJob("dynamic", { scheduled_at: `2026-01-01T00:00:0${i}Z` }),
        );
        api.scheduled.set("dynamic", many);
        api.pageSize = 3;
        try {
            const report = await sweeperFor(s)();
            assert.strictEqual(report.queues[0].created, 7);
        } finally {
            api.pageSize = 1000;
        }
        assert.strictEqual((await jobUuids(s.namespace)).length, 7);
    });

    it("makes one Job when the sweep and the events race on the same jobs", async () => {
        const s = await stack("sweep-race");
        const racing = Array.from({ length: 10 }, () => aStacksJob("dynamic"));
        api.scheduled.set("dynamic", racing);
        const handle = createEventHandler(s.settings, creatorAs(state), () => {});
        await Promise.all([
            sweeperFor(s)(),
            ...racing.flatMap((j) => [handle(eventFromStacksJob(j)), handle(eventFromStacksJob(j))]),
        ]);
        assert.deepStrictEqual(await jobUuids(s.namespace), racing.map((j) => j.id).sort());
    });

    it("leaves a queue whose dispatch is paused alone", async () => {
        const s = await stack("sweep-paused");
        api.scheduled.set("dynamic", [aStacksJob("dynamic")]);
        api.paused.add("dynamic");
        const report = await sweeperFor(s)();
        assert.strictEqual(report.queues[0].paused, true);
        assert.strictEqual(report.queues[0].created, 0);
        assert.deepStrictEqual(await jobUuids(s.namespace), []);
    });

    it("waits out a 429 with Retry-After, and reports a 5xx clearly so the next sweep retries", async () => {
        const s = await stack("sweep-limits");
        api.scheduled.set("dynamic", [aStacksJob("dynamic")]);
        api.failNext(429);
        const started = Date.now();
        assert.strictEqual((await sweeperFor(s)()).queues[0].created, 1);
        assert.ok(Date.now() - started >= 900, "it waited about the Retry-After second");

        api.scheduled.set("dynamic", [aStacksJob("dynamic")]);
        api.failNext(503, 2);
        await assert.rejects(
            sweeperFor(s)(),
            /sweep: queue dynamic: Buildkite Stacks API POST \/stacks\/register: 503 .*the next sweep tries again; queue other/,
        );
        assert.strictEqual((await sweeperFor(s)()).queues[0].created, 1, "the next sweep catches up");
    });

    it("says what is wrong with a token the Stacks API refuses", async () => {
        const s = await stack("sweep-token");
        const sweep = createSweeper(
            s.settings,
            stacksApi(() => "wrong", { endpoint: api.endpoint }),
            creatorAs(state, SWEEPER_IDENTITY),
            "scaledkite-test",
            () => {},
        );
        await assert.rejects(sweep(), /401 \(Unauthorized\); the agent token must be a cluster agent token/);
    });

    it("keeps queues Connected between sweeps: a light listing of each at the given offsets; a failed one is logged, not thrown", async () => {
        const s = await stack("sweep-heartbeat");
        await sweeperFor(s)(); // registers the queues
        let clock = 1_000_000;
        const slept: number[] = [];
        const lines: string[] = [];
        const before = (q: string) => api.listedAt.get(q)?.length ?? 0;
        const [d0, o0] = [before("dynamic"), before("other")];
        api.failNext(503);
        const listings = await keepQueuesConnected(
            stacksApi(() => api.token, { endpoint: api.endpoint }),
            "scaledkite-test",
            ["dynamic", "other"],
            heartbeatOffsets(60_000, 60_000),
            clock,
            async (ms) => {
                slept.push(ms);
                clock += ms;
            },
            (l) => lines.push(l),
            () => clock,
        );
        assert.deepStrictEqual(slept, [20_000, 20_000], "at 20 s and 40 s of a one-minute interval");
        assert.strictEqual(listings, 3, "four listings, one refused");
        assert.strictEqual(before("dynamic") - d0 + before("other") - o0, 3);
        assert.match(
            lines[0],
            /could not list the queue to keep it Connected: Buildkite Stacks API GET \/stacks\/scaledkite-test\/scheduled-jobs: 503/,
        );
    });

    it("turns a Stacks API job into the event the handler takes", () => {
        const j = aStacksJob("dynamic");
        const e = eventFromStacksJob(j) as any;
        assert.strictEqual(e["detail-type"], "Job Scheduled");
        assert.strictEqual(e.detail.job.uuid, j.id);
        assert.deepStrictEqual(e.detail.job.agent_query_rules, ["queue=dynamic"]);
    });

    it("runs as the serialized sweep Lambda: reads the agent token Secret as its own identity, lists, creates", async function () {
        this.timeout(60_000);
        const tokenApi = await startStacksApi("bk-agent-token-SECRET-VALUE"); // the token the stack's Secret holds
        try {
            const s = await stack("sweep-lambda", { agentEndpoint: tokenApi.endpoint, stackKey: "ci-local" });
            const lost = [aStacksJob("dynamic"), aStacksJob("other")];
            tokenApi.scheduled.set("dynamic", [lost[0]]);
            tokenApi.scheduled.set("other", [lost[1]]);
            const dir = writeLambdaPackage(await lambdaCode(s.run, "sweep-fn"));
            // With 26 s to run, the sweep lists each queue once more 20 s after it began (keepQueuesConnected).
            const { results, logs } = await invokeLambda(
                dir,
                [{ "detail-type": "Scheduled Event", source: "aws.events" }],
                {
                    AWS_ACCESS_KEY_ID: SWEEPER_IDENTITY.accessKeyId,
                    AWS_SECRET_ACCESS_KEY: SWEEPER_IDENTITY.secretAccessKey,
                    LAMBDA_TIMEOUT_MS: "26000",
                },
            );
            assert.strictEqual(results[0].ok, true, JSON.stringify(results) + logs.join("\n"));
            assert.deepStrictEqual(await jobUuids(s.namespace), lost.map((j) => j.id).sort());
            assert.ok(tokenApi.registered.has("ci-local/dynamic"));
            const swept = logs.find((l) => l.startsWith('{"msg":"scaledkite.sweep","queue":"dynamic"'));
            assert.deepStrictEqual(
                parseEmf(swept!).metrics.SweepCreated,
                { unit: "Count", value: 1 },
                "the serialized sweep's line carries its metrics",
            );
            for (const queue of ["dynamic", "other"]) {
                const listed = tokenApi.listedAt.get(queue)!;
                assert.strictEqual(listed.length, 2, `queue ${queue}: the sweep's listing and one heartbeat`);
                assert.ok(
                    listed[1] - listed[0] >= 15_000 && listed[1] - listed[0] < 25_000,
                    `${listed[1] - listed[0]} ms apart`,
                );
            }

            // The scheduler's identity may not read the token: the sweep needs its own.
            const asScheduler = await invokeLambda(dir, [{}], { LAMBDA_TIMEOUT_MS: "20000" });
            assert.strictEqual(asScheduler.results[0].ok, false);
            assert.match(
                asScheduler.results[0].error!,
                /reading Secret sweep-lambda\/scaledkite-agent-token: forbidden/,
            );
        } finally {
            await tokenApi.close();
        }
    });

    describe("workers that will never run, or are no longer needed", () => {
        const quick = { pendingTimeoutMs: 0, startFailureGraceMs: 0 };
        async function schedule(s: DeployedStack, queue: string): Promise<string> {
            const job = aStacksJob(queue);
            assert.strictEqual(
                (await createEventHandler(s.settings, creatorAs(state), () => {})(eventFromStacksJob(job))).outcome,
                "created",
            );
            return job.id;
        }
        async function podWaiting(namespace: string, uuid: string, why: (p: any) => boolean): Promise<void> {
            const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
            for (let i = 0; i < 150; i++) {
                const pods = await core.listNamespacedPod({
                    namespace,
                    labelSelector: `buildkite.com/job-uuid=${uuid}`,
                });
                if (pods.items[0] && why(pods.items[0])) return;
                await new Promise((r) => setTimeout(r, 200));
            }
            throw new Error("the pod never reached the expected state");
        }
        const sweeper = (s: DeployedStack, lines: string[]) =>
            createSweeper(
                s.settings,
                stacksApi(() => api.token, { endpoint: api.endpoint }),
                creatorAs(state, SWEEPER_IDENTITY),
                "scaledkite-test",
                (l) => lines.push(l),
                quick,
            );

        // On the real node: the kubelet's own ErrImagePull and kube-scheduler's own Unschedulable.
        it("fails the Buildkite job of a worker whose image does not exist, with the image in the reason, and deletes it", async function () {
            this.timeout(120_000);
            const s = await stack("sweep-image", {
                queues: { dynamic: { image: "buildkite/agent:does-not-exist", dind: false }, other: {} },
            });
            const uuid = await schedule(s, "dynamic");
            await podWaiting(s.namespace, uuid, (p) =>
                /^(ErrImagePull|ImagePullBackOff)$/.test(
                    p.status?.containerStatuses?.[0]?.state?.waiting?.reason ?? "",
                ),
            );
            // Sweeps until the kubelet's second pull has failed too (the first alone may be a passing one).
            const lines: string[] = [];
            const sweep = sweeper(s, lines);
            const workers = await eventually(
                "a sweep to give up on the worker",
                async () => {
                    const r = await sweep();
                    return r.workers.failed.length ? r.workers : undefined;
                },
                90_000,
            );
            assert.deepStrictEqual(
                workers.failed.map((f) => f.jobUuid),
                [uuid],
            );
            assert.match(
                api.finished.get(uuid)!,
                /^Scaledkite: the worker could not start: (ErrImagePull|ImagePullBackOff) for container agent \(image "buildkite\/agent:does-not-exist"\), \d+ pulls failed in \d+ s since the pod started: .*docker.io\/buildkite\/agent:does-not-exist/,
            );
            assert.deepStrictEqual(await jobUuids(s.namespace), []);
            assert.ok(lines.some((l) => /"outcome":"unrunnable"/.test(l)));
        });

        it("a pull failure is given up on only past the grace from the pod's start and after two failed pulls, per the kubelet's events", async function () {
            this.timeout(120_000);
            const s = await stack("sweep-pull-grace", {
                queues: { dynamic: { image: "buildkite/agent:does-not-exist", dind: false }, other: {} },
            });
            const uuid = await schedule(s, "dynamic");
            await podWaiting(s.namespace, uuid, (p) =>
                /^(ErrImagePull|ImagePullBackOff)$/.test(
                    p.status?.containerStatuses?.[0]?.state?.waiting?.reason ?? "",
                ),
            );
            const sweepWith = (graceMs: number) =>
                createSweeper(
                    s.settings,
                    stacksApi(() => api.token, { endpoint: api.endpoint }),
                    creatorAs(state, SWEEPER_IDENTITY),
                    "scaledkite-test",
                    () => {},
                    { pendingTimeoutMs: 0, startFailureGraceMs: graceMs },
                );
            assert.deepStrictEqual(
                (await sweepWith(60_000)()).workers.failed,
                [],
                "a failure within the grace is not given up on",
            );
            assert.deepStrictEqual(await jobUuids(s.namespace), [uuid]);
            // The sweep's identity reads the kubelet's events (its Role allows it): one per pull attempt.
            const failedPulls = async () =>
                (await creatorAs(state, SWEEPER_IDENTITY).listEvents!(s.namespace, "Pod"))
                    .filter((e) => e.reason === "Failed" && /^Failed to pull image/.test(e.message ?? ""))
                    .reduce((n, e) => n + (e.count ?? 1), 0);
            const pulls = await eventually(
                "the kubelet's second failed pull",
                async () => {
                    const n = await failedPulls();
                    return n >= 2 ? n : undefined;
                },
                90_000,
            );
            const { workers } = await sweepWith(1_000)();
            assert.deepStrictEqual(
                workers.failed.map((f) => f.jobUuid),
                [uuid],
                `${pulls} failed pulls`,
            );
            assert.match(
                api.finished.get(uuid)!,
                /could not start: (ErrImagePull|ImagePullBackOff) for container (agent|command) .*, \d+ pulls failed in \d+ s since the pod started/,
            );
        });

        it("keeps a stuck worker while failing its job in Buildkite does not succeed, and fails it on the next sweep", async () => {
            const s = await stack("sweep-keep", { nodeSelector: { [UNSCHEDULABLE_LABEL]: "true" } });
            const uuid = await schedule(s, "dynamic");
            await podWaiting(s.namespace, uuid, (p) =>
                p.status?.conditions?.some((c: any) => c.reason === "Unschedulable"),
            );
            const lines: string[] = [];
            // Both queues' listings answer; the finish and the job-state check do not.
            api.scheduled.set("dynamic", []);
            const sweep = sweeper(s, lines);
            api.failFinish = 1;
            await assert.rejects(sweep(), /job .*: could not fail it in Buildkite \(its worker stays\)/);
            assert.deepStrictEqual(await jobUuids(s.namespace), [uuid], "no worker deleted before Buildkite knows why");
            assert.ok(
                lines.some((l) => /"outcome":"kept"/.test(l)),
                lines.join("\n"),
            );
            assert.strictEqual(api.finished.get(uuid), undefined);
            const { workers } = await sweep();
            assert.deepStrictEqual(
                workers.failed.map((f) => f.jobUuid),
                [uuid],
            );
            assert.deepStrictEqual(await jobUuids(s.namespace), []);
        });

        it("a full spend cap is not an error: the jobs that fit are created, the rest wait for a later sweep, and Buildkite is told why", async () => {
            const s = await stack("sweep-quota", {
                maxConcurrentJobs: 1,
                nodeSelector: { [UNSCHEDULABLE_LABEL]: "true" },
            });
            // Scheduled 70 s ago: their wait passed the first checkpoint (1 min) within this sweep's interval.
            const scheduled_at = new Date(Date.now() - 70_000).toISOString();
            const jobs = [
                aStacksJob("dynamic", { scheduled_at }),
                aStacksJob("dynamic", { scheduled_at }),
                aStacksJob("dynamic", { scheduled_at }),
            ];
            api.notifications.length = 0;
            api.scheduled.set("dynamic", jobs);
            const lines: string[] = [];
            const report = await sweeperFor(s, lines)();
            const dynamic = report.queues.find((q) => q.queue === "dynamic")!;
            assert.deepStrictEqual([dynamic.created, dynamic.deferred, dynamic.failed], [1, 2, 0]);
            assert.strictEqual((await jobUuids(s.namespace)).length, 1);
            const capped = api.notifications.filter((n) => /spend cap is full/.test(n.detail));
            assert.strictEqual(capped.length, 2, JSON.stringify(api.notifications));
            assert.ok(
                capped.every(
                    (n) =>
                        n.detail.startsWith("Scaledkite: waiting 1 min: the stack's spend cap is full") &&
                        n.detail.length <= 256,
                ),
            );
            // The created one is told too once its pod exists (the Job controller makes it a moment later).
            assert.ok(api.notifications.length === 2 || api.notifications.length === 3);
        });

        it("fails the Buildkite job of a worker that cannot be scheduled, with the scheduler's message, and deletes it", async () => {
            const s = await stack("sweep-unschedulable", { nodeSelector: { [UNSCHEDULABLE_LABEL]: "true" } });
            const uuid = await schedule(s, "dynamic");
            await podWaiting(s.namespace, uuid, (p) =>
                p.status?.conditions?.some((c: any) => c.reason === "Unschedulable"),
            );
            const { workers } = await sweeper(s, [])();
            assert.deepStrictEqual(
                workers.failed.map((f) => f.jobUuid),
                [uuid],
            );
            assert.match(
                api.finished.get(uuid)!,
                /could not be scheduled for 0 min: 0\/2 nodes are available: 1 node\(s\) didn't match Pod's node affinity\/selector, 1 node\(s\) had untolerated taint/,
            );
            assert.deepStrictEqual(await jobUuids(s.namespace), []);
        });

        it("trusts only its own workers: a Job labelled with another job's uuid, not made for it, fails nothing and stays", async () => {
            const s = await stack("sweep-forged", { nodeSelector: { [UNSCHEDULABLE_LABEL]: "true" } });
            const own = await schedule(s, "dynamic");
            await podWaiting(s.namespace, own, (p) =>
                p.status?.conditions?.some((c: any) => c.reason === "Unschedulable"),
            );
            // Someone with access to the namespace copies the worker Job under another name, labelled
            // with a job that is still scheduled in Buildkite (it has no worker of ours).
            const victim = aStacksJob("dynamic").id;
            const batch = adminConfig(state).makeApiClient(k8sClient().BatchV1Api);
            const [real] = (await batch.listNamespacedJob({ namespace: s.namespace })).items;
            const strip = (labels: Record<string, string> = {}) =>
                Object.fromEntries(
                    Object.entries({ ...labels, "buildkite.com/job-uuid": victim }).filter(
                        ([k]) => !/controller-uid|job-name/.test(k),
                    ),
                );
            await batch.createNamespacedJob({
                namespace: s.namespace,
                body: {
                    metadata: {
                        name: `forged-${victim.slice(0, 8)}`,
                        labels: strip(real.metadata!.labels),
                        annotations: real.metadata!.annotations,
                    },
                    spec: {
                        ...real.spec!,
                        selector: undefined,
                        manualSelector: undefined,
                        template: {
                            ...real.spec!.template,
                            metadata: {
                                ...real.spec!.template.metadata,
                                labels: strip(real.spec!.template.metadata!.labels),
                            },
                        },
                    },
                },
            });
            await podWaiting(s.namespace, victim, (p) =>
                p.status?.conditions?.some((c: any) => c.reason === "Unschedulable"),
            );
            const { workers } = await sweeper(s, [])();
            assert.deepStrictEqual(
                workers.failed.map((f) => f.jobUuid),
                [own],
                "only the worker Scaledkite made for its job",
            );
            assert.ok(!api.finished.has(victim), "the other job is not failed in Buildkite");
            assert.deepStrictEqual(await jobUuids(s.namespace), [victim], "the forged Job is left alone");
        });

        it("tells Buildkite why a worker waits: the scheduler's message, once its wait passes a minute", async () => {
            const s = await stack("sweep-notice", { nodeSelector: { [UNSCHEDULABLE_LABEL]: "true" } });
            const job = aStacksJob("dynamic", { scheduled_at: new Date(Date.now() - 65_000).toISOString() });
            assert.strictEqual(
                (await createEventHandler(s.settings, creatorAs(state), () => {})(eventFromStacksJob(job))).outcome,
                "created",
            );
            await podWaiting(s.namespace, job.id, (p) =>
                p.status?.conditions?.some((c: any) => c.reason === "Unschedulable"),
            );
            api.notifications.length = 0;
            const sweep = createSweeper(
                s.settings,
                stacksApi(() => api.token, { endpoint: api.endpoint }),
                creatorAs(state, SWEEPER_IDENTITY),
                "scaledkite-test",
                () => {},
                { pendingTimeoutMs: 3_600_000, startFailureGraceMs: 60_000 },
            );
            const { workers } = await sweep();
            assert.strictEqual(workers.notified, 1);
            assert.strictEqual(api.notifications[0].job_uuid, job.id);
            assert.match(
                api.notifications[0].detail,
                /^Scaledkite: waiting 1 min: no node fits its worker yet \(0\/2 nodes are available: .*didn't match Pod's node affinity\/selector/,
            );
        });

        it("deletes the waiting worker of a job cancelled before it started, and fails nothing", async () => {
            const s = await stack("sweep-cancelled", { nodeSelector: { [UNSCHEDULABLE_LABEL]: "true" } });
            const uuid = await schedule(s, "dynamic");
            const kept = await schedule(s, "dynamic");
            await podWaiting(s.namespace, uuid, (p) =>
                p.status?.conditions?.some((c: any) => c.reason === "Unschedulable"),
            );
            await podWaiting(s.namespace, kept, (p) =>
                p.status?.conditions?.some((c: any) => c.reason === "Unschedulable"),
            );
            api.states.set(uuid, "canceled");
            const sweep = createSweeper(
                s.settings,
                stacksApi(() => api.token, { endpoint: api.endpoint }),
                creatorAs(state, SWEEPER_IDENTITY),
                "scaledkite-test",
                () => {},
                { pendingTimeoutMs: 3_600_000, startFailureGraceMs: 60_000 },
            );
            const { workers } = await sweep();
            assert.deepStrictEqual(workers.cancelled, [uuid]);
            assert.deepStrictEqual(workers.failed, []);
            assert.deepStrictEqual(await jobUuids(s.namespace), [kept], "the worker of a job still scheduled stays");
        });
    });
});
