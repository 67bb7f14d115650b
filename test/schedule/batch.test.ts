/** Batches from the event queue: only the records worth retrying stay. Table-driven; the real API server's side is in test/integration/deliveries.test.ts. */
import * as assert from "assert";
import { SCHEDULER_IDENTITY, STRANGER_IDENTITY } from "../../k8s/local/awsIdentities";
import {
    handleBatch,
    isSqsBatch,
    queueRetries,
    retryDelaySeconds,
    type SqsRecord,
} from "../../scheduler/schedule/batch";
import { kubernetesError } from "../../scheduler/core/errors";
import { queueUrl, sqsVisibility } from "../../scheduler/clients/sqs";
import { startSqs } from "../helpers/sqsStandIn";

const record = (messageId: string, body: unknown): SqsRecord => ({
    messageId,
    eventSource: "aws:sqs",
    body: typeof body === "string" ? body : JSON.stringify(body),
});

describe("handleBatch", () => {
    it("reports exactly the records whose handling threw; the rest are done", async () => {
        const seen: unknown[] = [];
        const handle = async (event: unknown) => {
            seen.push(event);
            const id = (event as { id?: string }).id;
            if (id === "full") throw kubernetesError("creating Job: the namespace quota is full", true, 403);
            if (id === "forbidden") throw kubernetesError("creating Job: forbidden", false, 403);
            return { outcome: "created" as const, reason: "", ms: 0 };
        };
        const r = await handleBatch(
            [
                record("m1", { id: "ok" }),
                record("m2", { id: "full" }),
                record("m3", { id: "forbidden" }),
                record("m4", { id: "ok2" }),
            ],
            handle,
        );
        assert.deepStrictEqual(r.batchItemFailures.map((f) => f.itemIdentifier).sort(), ["m2", "m3"]);
        assert.strictEqual(seen.length, 4);
    });

    it("passes a body that is not JSON as text, so the handler logs it invalid and it is never retried", async () => {
        const seen: unknown[] = [];
        const r = await handleBatch([record("m1", "{not json")], async (e) => {
            seen.push(e);
            return { outcome: "invalid" as const, reason: "", ms: 0 };
        });
        assert.deepStrictEqual(seen, ["{not json"]);
        assert.deepStrictEqual(r.batchItemFailures, []);
    });
});

describe("isSqsBatch", () => {
    const table: [string, unknown, boolean][] = [
        ["a batch from SQS", { Records: [record("m", {})] }, true],
        ["one EventBridge event", { "detail-type": "Job Scheduled", detail: {} }, false],
        ["records from another source", { Records: [{ eventSource: "aws:s3" }] }, false],
        ["an empty batch", { Records: [] }, false],
        ["null", null, false],
    ];
    for (const [name, event, want] of table) it(name, () => assert.strictEqual(isSqsBatch(event), want));
});

describe("queueRetries", () => {
    for (const timeout of [12, 30, 300, 900]) {
        it(`a ${timeout} s Lambda: hidden longer than 6 timeouts, retried for at least a day, kept longer than that`, () => {
            const q = queueRetries(timeout);
            assert.ok(q.visibilityTimeoutSeconds >= 6 * timeout && q.visibilityTimeoutSeconds >= 60);
            assert.ok(q.maxReceiveCount * q.visibilityTimeoutSeconds >= 24 * 3600);
            assert.ok(q.messageRetentionSeconds > q.maxReceiveCount * q.visibilityTimeoutSeconds);
            assert.ok(q.visibilityTimeoutSeconds <= 43_200, "SQS's limit");
        });
    }
});

describe("growing retry delays", () => {
    const table: [number, number][] = [
        [1, 30],
        [2, 60],
        [3, 120],
        [5, 480],
        [6, 900],
        [50, 900],
    ];
    for (const [receive, seconds] of table)
        it(`delivery ${receive} failed: back after ${seconds} s`, () =>
            assert.strictEqual(retryDelaySeconds(receive, 900), seconds));

    const queueArn = "arn:aws:sqs:us-east-1:123456789012:scheduler-events-1a2b3c";
    const failing = (id: string, receiveCount: number): SqsRecord => ({
        ...record(id, { id: "full" }),
        eventSourceARN: queueArn,
        receiptHandle: `rh-${id}`,
        attributes: { ApproximateReceiveCount: String(receiveCount) },
    });
    const handle = async () => {
        throw kubernetesError("the namespace quota is full", true, 403);
    };

    it("hides each failed record (signed, through the SQS stand-in) for the delay its delivery count gives", async () => {
        const sqs = await startSqs([SCHEDULER_IDENTITY]);
        try {
            const setVisibility = sqsVisibility(() => SCHEDULER_IDENTITY, { AWS_ENDPOINT_URL_SQS: sqs.endpoint });
            const logs: string[] = [];
            const r = await handleBatch([failing("a", 1), failing("b", 4)], handle, {
                setVisibility,
                maxDelaySeconds: 900,
                log: (l) => logs.push(l),
            });
            assert.deepStrictEqual(r.batchItemFailures.map((f) => f.itemIdentifier).sort(), ["a", "b"]);
            assert.deepStrictEqual(sqs.changes.map((c) => [c.receiptHandle, c.seconds, c.who, c.queueUrl]).sort(), [
                [
                    "rh-a",
                    30,
                    SCHEDULER_IDENTITY.accessKeyId,
                    "https://sqs.us-east-1.amazonaws.com/123456789012/scheduler-events-1a2b3c",
                ],
                [
                    "rh-b",
                    240,
                    SCHEDULER_IDENTITY.accessKeyId,
                    "https://sqs.us-east-1.amazonaws.com/123456789012/scheduler-events-1a2b3c",
                ],
            ]);
            assert.deepStrictEqual(logs, []);
        } finally {
            await sqs.close();
        }
    });

    it("still reports the record when SQS refuses the delay, and says the queue's timeout applies", async () => {
        const sqs = await startSqs([SCHEDULER_IDENTITY]);
        try {
            const setVisibility = sqsVisibility(() => STRANGER_IDENTITY, { AWS_ENDPOINT_URL_SQS: sqs.endpoint });
            const logs: string[] = [];
            const r = await handleBatch([failing("a", 1)], handle, {
                setVisibility,
                maxDelaySeconds: 900,
                log: (l) => logs.push(l),
            });
            assert.deepStrictEqual(r.batchItemFailures, [{ itemIdentifier: "a" }]);
            assert.match(
                JSON.parse(logs[0]).warning,
                /could not set this record's retry delay to 30 s, so it comes back after the queue's visibility timeout: SQS answered 400 InvalidClientTokenId \(unknown access key/,
            );
        } finally {
            await sqs.close();
        }
    });

    it("turns a queue ARN into its URL", () => {
        assert.deepStrictEqual(queueUrl(queueArn), {
            url: "https://sqs.us-east-1.amazonaws.com/123456789012/scheduler-events-1a2b3c",
            region: "us-east-1",
        });
        assert.strictEqual(queueUrl("arn:aws:sns:us-east-1:123456789012:x"), undefined);
    });
});
