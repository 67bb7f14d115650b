/**
 * The Lambda code exactly as Pulumi serializes it (the `__index.js` of the function's archive),
 * loaded in a fresh Node 24 process and invoked with events: it signs an EKS token from its AWS
 * credentials and creates the worker Job on the real API server.
 */
import * as assert from "assert";
import { parseEmf } from "../helpers/emf";
import * as fs from "fs";
import { type ClusterState } from "../../k8s/local/cluster";
import { anEvent } from "../helpers/builders";
import { deleteNamespace, deployStack, type DeployedStack } from "../helpers/deploy";
import { invokeLambda, writeLambdaPackage } from "../helpers/lambdaPackage";
import { adminConfig, k8sClient, localCluster } from "../helpers/localCluster";
import { lambdaCode } from "../helpers/pulumiProgram";
import { startSqs } from "../helpers/sqsStandIn";
import { SCHEDULER_IDENTITY } from "../../k8s/local/awsIdentities";

describe("the serialized Lambda on a real API server", function () {
    let state: ClusterState;
    let stack: DeployedStack;
    let dir: string;
    before(async function () {
        state = await localCluster(this);
        stack = await deployStack(state, "lambda-workers", { queues: { dynamic: {}, "docker-free": { dind: false } } });
        dir = writeLambdaPackage(await lambdaCode(stack.run));
    });
    after(async function () {
        if (state) await deleteNamespace(state, "lambda-workers");
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it("runs on Node 24", () => {
        assert.match(process.version, /^v24\./, "the project's pinned Node runs the tests and the Lambda");
    });

    it("refuses, without retrying, an event from another account or another event source (only the stack's rule should deliver)", async () => {
        const otherAccount = anEvent()
            .queue("docker-free")
            .with((e) => {
                e.account = "999999999999";
            })
            .build();
        const otherSource = anEvent()
            .queue("docker-free")
            .with((e) => {
                e.source = "aws.partner/buildkite.com/someone-else/0106-187c-12cd4fe";
            })
            .build();
        const noSource = anEvent()
            .queue("docker-free")
            .with((e) => {
                delete e.source;
            })
            .build();
        const { results, logs } = await invokeLambda(dir, [otherAccount, otherSource, noSource]);
        assert.deepStrictEqual(
            results.map((r) => r.ok),
            [true, true, true],
            "logged and done: never retried",
        );
        const decisions = logs.map((l) => JSON.parse(l.slice(l.indexOf("{"))));
        assert.deepStrictEqual(
            decisions.map((d) => d.outcome),
            ["invalid", "invalid", "invalid"],
        );
        assert.match(decisions[0].reason, /event is from account "999999999999", not this stack's 123456789012/);
        assert.match(
            decisions[1].reason,
            /event source "aws.partner\/buildkite.com\/someone-else\/0106-187c-12cd4fe" is not the stack's event source aws.partner\/buildkite.com\/my-org\/0106-187c-12cd4fe/,
        );
        assert.match(decisions[2].reason, /event source null is not the stack's event source/);
        const batch = adminConfig(state).makeApiClient(k8sClient().BatchV1Api);
        for (const e of [otherAccount, otherSource, noSource]) {
            await assert.rejects(
                batch.readNamespacedJob({ name: `buildkite-agent-${e.detail.job.uuid}`, namespace: "lambda-workers" }),
                (err: { code?: number }) => err.code === 404,
            );
        }
    });

    it("creates one worker Job per event, treats a duplicate as done, and ignores what is not its own", async () => {
        const job = anEvent().queue("docker-free").build();
        const foreign = anEvent().queue("gpu").build();
        const finished = anEvent().detailType("Job Finished").build();
        const { results, logs } = await invokeLambda(dir, [job, job, foreign, finished, { hello: "world" }]);
        assert.deepStrictEqual(
            results.map((r) => r.ok),
            [true, true, true, true, true],
            JSON.stringify(results),
        );
        const decisions = logs.map((l) => JSON.parse(l.slice(l.indexOf("{"))));
        assert.deepStrictEqual(
            decisions.map((d) => d.outcome),
            ["created", "exists", "ignored", "ignored", "invalid"],
        );
        assert.strictEqual(decisions[0].job, `lambda-workers/buildkite-agent-${job.detail.job.uuid}`);
        assert.strictEqual(decisions[0].queue, "docker-free");
        assert.match(decisions[2].reason, /queue=gpu, which this stack does not serve/);
        assert.match(decisions[4].reason, /no "detail-type"/);
        for (const d of decisions) assert.strictEqual(typeof d.ms, "number");
        // Each line is a JSON log event as CloudWatch reads it, with its metrics (Embedded Metric Format).
        const metrics = logs.map((l) => {
            assert.ok(l.startsWith("{"), `a bare JSON line: ${l.slice(0, 80)}`);
            return parseEmf(l);
        });
        assert.deepStrictEqual(
            metrics.map((m) => [m.dimensions.Queue, m.dimensions.Outcome, m.metrics.Events.value]),
            [
                ["docker-free", "created", 1],
                ["docker-free", "exists", 1],
                ["none", "ignored", 1],
                ["dynamic", "ignored", 1],
                ["none", "invalid", 1],
            ],
        );
        assert.strictEqual(metrics[0].dimensions.Namespace, "lambda-workers");
        assert.strictEqual(
            metrics[0].metrics.ScheduleDelay.unit,
            "Milliseconds",
            "the created worker's delay since the job became runnable",
        );

        const batch = adminConfig(state).makeApiClient(k8sClient().BatchV1Api);
        const created = await batch.readNamespacedJob({
            name: `buildkite-agent-${job.detail.job.uuid}`,
            namespace: "lambda-workers",
        });
        assert.strictEqual(
            created.spec!.template.spec!.initContainers,
            undefined,
            "the docker-free queue's settings were used",
        );
        const all = await batch.listNamespacedJob({ namespace: "lambda-workers" });
        assert.strictEqual(all.items.length, 1, "the foreign and finished events made no Job");
    });

    it("takes a batch from the event queue: the jobs that fit under the spend cap are created, only the over-quota records are reported failed", async function () {
        this.timeout(60_000);
        // maxConcurrentJobs: 2 becomes the namespace's ResourceQuota (count/jobs.batch), as pulumi up makes it.
        const capped = await deployStack(
            state,
            "lambda-batch",
            { maxConcurrentJobs: 2, queues: { dynamic: {} } },
            "stand-in",
        );
        try {
            const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
            for (let i = 0; i < 100; i++) {
                const q = await core.readNamespacedResourceQuota({
                    name: "scaledkite-spend-caps",
                    namespace: "lambda-batch",
                });
                if (q.status?.hard) break;
                await new Promise((r) => setTimeout(r, 100));
            }
            const cappedDir = writeLambdaPackage(await lambdaCode(capped.run));
            const sqs = await startSqs([SCHEDULER_IDENTITY]);
            try {
                const events = [anEvent().build(), anEvent().build(), anEvent().build(), anEvent().build()];
                // As Lambda's SQS event source mapping hands it over: EventBridge's event is the record's body.
                const queueArn = "arn:aws:sqs:us-east-1:000000000000:scheduler-events";
                const records = [
                    ...events.map((e, i) => ({
                        messageId: `m${i}`,
                        eventSource: "aws:sqs",
                        eventSourceARN: queueArn,
                        receiptHandle: `rh-m${i}`,
                        attributes: { ApproximateReceiveCount: "1" },
                        body: JSON.stringify(e),
                    })),
                    {
                        messageId: "garbage",
                        eventSource: "aws:sqs",
                        eventSourceARN: queueArn,
                        receiptHandle: "rh-garbage",
                        body: "{not an event",
                    },
                ];
                const { results, logs } = await invokeLambda(cappedDir, [{ Records: records }], {
                    AWS_ENDPOINT_URL_SQS: sqs.endpoint,
                });
                assert.strictEqual(results[0].ok, true, JSON.stringify(results) + logs.join("\n"));
                const failed = results[0].value.batchItemFailures
                    .map((f: { itemIdentifier: string }) => f.itemIdentifier)
                    .sort();
                const decisions = logs.map((l) => JSON.parse(l.slice(l.indexOf("{"))));
                const created = decisions.filter((d) => d.outcome === "created").map((d) => d.jobUuid);
                assert.strictEqual(created.length, 2, "two fit under the cap");
                const over = events
                    .map((e, i) => [e.detail.job.uuid, `m${i}`])
                    .filter(([uuid]) => !created.includes(uuid))
                    .map(([, id]) => id)
                    .sort();
                assert.deepStrictEqual(failed, over, "exactly the over-quota records stay in the queue");
                assert.ok(
                    decisions.some((d) => d.outcome === "invalid"),
                    "the garbage record is logged invalid and dropped, not retried",
                );
                assert.ok(
                    decisions
                        .filter((d) => d.outcome === "failed")
                        .every((d) => d.retryable && /quota is full/.test(d.reason)),
                );
                // Each failed record comes back after the first retry delay, set with the function's own credentials.
                assert.deepStrictEqual(
                    sqs.changes.map((c) => [c.receiptHandle, c.seconds, c.who]).sort(),
                    over.map((id) => [`rh-${id}`, 30, SCHEDULER_IDENTITY.accessKeyId]),
                );
            } finally {
                await sqs.close();
                fs.rmSync(cappedDir, { recursive: true, force: true });
            }
        } finally {
            await deleteNamespace(state, "lambda-batch");
        }
    });

    it("throws what is worth retrying, so EventBridge and Lambda retry it", async () => {
        const { results } = await invokeLambda(dir, [anEvent().build()], {
            AWS_SECRET_ACCESS_KEY: "not-the-right-key",
        });
        assert.strictEqual(results[0].ok, false);
        assert.strictEqual(results[0].retryable, true);
        assert.match(results[0].error!, /unauthorized/);
    });

    it("fails with a clear message, not a crash, without AWS credentials", async () => {
        const { results } = await invokeLambda(dir, [anEvent().build()], {
            AWS_ACCESS_KEY_ID: "",
            AWS_SECRET_ACCESS_KEY: "",
        });
        assert.strictEqual(results[0].ok, false);
        assert.match(results[0].error!, /no AWS credentials/);
    });
});
