/** Batches from the event queue: only the records worth retrying stay. Table-driven; the real API server's side is in test/integration/deliveries.test.ts. */
import * as assert from "assert";
import { handleBatch, isSqsBatch, queueRetries, SqsRecord } from "../scheduler/batch";
import { kubernetesError } from "../scheduler/errors";

const record = (messageId: string, body: unknown): SqsRecord => ({ messageId, eventSource: "aws:sqs", body: typeof body === "string" ? body : JSON.stringify(body) });

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
        const r = await handleBatch([record("m1", { id: "ok" }), record("m2", { id: "full" }), record("m3", { id: "forbidden" }), record("m4", { id: "ok2" })], handle);
        assert.deepStrictEqual(r.batchItemFailures.map((f) => f.itemIdentifier).sort(), ["m2", "m3"]);
        assert.strictEqual(seen.length, 4);
    });

    it("passes a body that is not JSON as text, so the handler logs it invalid and it is never retried", async () => {
        const seen: unknown[] = [];
        const r = await handleBatch([record("m1", "{not json")], async (e) => { seen.push(e); return { outcome: "invalid" as const, reason: "", ms: 0 }; });
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
