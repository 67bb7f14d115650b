/**
 * Events through an SQS queue: EventBridge puts each Buildkite event in Scaledkite's queue, and
 * Lambda's event source mapping hands the scheduler batches of them. One batch, one answer: the
 * records that failed in a way worth retrying stay in the queue (partial batch failure reporting,
 * `ReportBatchItemFailures`), the rest are deleted. A record SQS has delivered `maxReceiveCount`
 * times goes to the dead-letter queue, from which it can be redriven to the source queue.
 *
 * Runs in the Lambda; pure except for calling the handler it is given.
 */
import type { EventHandler } from "./handler";

/** The part of an SQS record the scheduler reads. */
export interface SqsRecord {
    messageId: string;
    body: string;
    eventSource?: string;
}

/** What Lambda's event source mapping takes back: the records to keep (retry later). */
export interface BatchResponse {
    batchItemFailures: { itemIdentifier: string }[];
}

/** Whether a Lambda event is a batch from SQS (rather than one event, as the CLI and tests send). Pure. */
export function isSqsBatch(event: unknown): event is { Records: SqsRecord[] } {
    const records = (event as { Records?: unknown } | null)?.Records;
    return Array.isArray(records) && records.length > 0 && records.every((r) => (r as SqsRecord)?.eventSource === "aws:sqs");
}

/** How many records of one batch are handled at once. */
const PARALLEL = 10;

/**
 * Handles every record of a batch (at most PARALLEL at once) and reports those whose handling
 * threw: the handler throws what a later attempt may get past (a full quota, the API unreachable)
 * and what needs a change first (it stays in the queue until the DLQ, where it can be redriven).
 * A record whose body is not JSON is passed as text, so the handler logs it as invalid and it is
 * deleted, never retried.
 */
export async function handleBatch(records: SqsRecord[], handle: EventHandler): Promise<BatchResponse> {
    const failures: { itemIdentifier: string }[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(PARALLEL, records.length) }, async () => {
        while (next < records.length) {
            const record = records[next++];
            let event: unknown;
            try {
                event = JSON.parse(record.body);
            } catch {
                event = record.body;
            }
            try {
                await handle(event);
            } catch {
                failures.push({ itemIdentifier: record.messageId });
            }
        }
    }));
    return { batchItemFailures: failures };
}

/** The source queue's settings for a scheduler Lambda timeout: retries for at least a day. */
export interface QueueRetries {
    /** How long a received record stays hidden: 6 function timeouts (AWS's advice), at least a minute. */
    visibilityTimeoutSeconds: number;
    /** Deliveries before the dead-letter queue: together at least 24 hours of retries. */
    maxReceiveCount: number;
    /** How long a record is kept at all: longer than the retries. */
    messageRetentionSeconds: number;
}

/** The queue settings for a Lambda timeout. Pure. */
export function queueRetries(lambdaTimeoutSeconds: number): QueueRetries {
    const visibilityTimeoutSeconds = Math.max(60, 6 * lambdaTimeoutSeconds);
    const maxReceiveCount = Math.ceil(24 * 3600 / visibilityTimeoutSeconds) + 1;
    return { visibilityTimeoutSeconds, maxReceiveCount, messageRetentionSeconds: 4 * 24 * 3600 };
}
