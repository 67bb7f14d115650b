/**
 * Events through an SQS queue: EventBridge puts each Buildkite event in Scaledkite's queue, and
 * Lambda's event source mapping hands the scheduler batches of them. One batch, one answer: the
 * records that failed in a way worth retrying stay in the queue (partial batch failure reporting,
 * `ReportBatchItemFailures`), the rest are deleted. A record SQS has delivered `maxReceiveCount`
 * times goes to the dead-letter queue, from which it can be redriven to the source queue.
 *
 * Runs in the Lambda; pure except for calling the handler it is given.
 */
import type { EventHandler } from "./lambda";
import type { Logger } from "../clients/log";
import type { SetVisibility } from "../clients/sqs";

/** The part of an SQS record the scheduler reads. */
export interface SqsRecord {
    messageId: string;
    body: string;
    eventSource?: string;
    /** The queue's ARN. */
    eventSourceARN?: string;
    receiptHandle?: string;
    attributes?: { ApproximateReceiveCount?: string };
}

/** What Lambda's event source mapping takes back: the records to keep (retry later). */
export interface BatchResponse {
    batchItemFailures: { itemIdentifier: string }[];
}

/** Whether a Lambda event is a batch from SQS (rather than one event, as the CLI and tests send). Pure. */
export function isSqsBatch(event: unknown): event is { Records: SqsRecord[] } {
    const records = (event as { Records?: unknown } | null)?.Records;
    return (
        Array.isArray(records) &&
        records.length > 0 &&
        records.every((r) => (r as SqsRecord)?.eventSource === "aws:sqs")
    );
}

/** How many records of one batch are handled at once. */
const PARALLEL = 10;

/** The first retry's delay; each delivery after that waits twice as long, up to the queue's visibility timeout. */
export const FIRST_RETRY_SECONDS = 30;

/** The delay before a record that failed on its `receiveCount`-th delivery is delivered again. Pure. */
export function retryDelaySeconds(receiveCount: number, maxSeconds: number): number {
    const n = Math.max(1, Math.floor(receiveCount));
    return Math.min(maxSeconds, FIRST_RETRY_SECONDS * 2 ** Math.min(n - 1, 20));
}

/**
 * Handles every record of a batch (at most PARALLEL at once) and reports those whose handling
 * threw: the handler throws what a later attempt may get past (a full quota, the API unreachable)
 * and what needs a change first (it stays in the queue until the DLQ, where it can be redriven).
 * A record whose body is not JSON is passed as text, so the handler logs it as invalid and it is
 * deleted, never retried. A failed record is hidden for retryDelaySeconds (growing with each
 * delivery); if that call fails, the queue's own visibility timeout applies, which is logged.
 */
export async function handleBatch(
    records: SqsRecord[],
    handle: EventHandler,
    retry?: { setVisibility: SetVisibility; maxDelaySeconds: number; log: Logger },
): Promise<BatchResponse> {
    const failures: { itemIdentifier: string }[] = [];
    let next = 0;
    await Promise.all(
        Array.from({ length: Math.min(PARALLEL, records.length) }, async () => {
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
                    if (retry && record.eventSourceARN && record.receiptHandle) {
                        const seconds = retryDelaySeconds(
                            Number(record.attributes?.ApproximateReceiveCount ?? 1),
                            retry.maxDelaySeconds,
                        );
                        await retry.setVisibility(record.eventSourceARN, record.receiptHandle, seconds).catch((e) =>
                            retry.log(
                                JSON.stringify({
                                    msg: "scaledkite.schedule",
                                    messageId: record.messageId,
                                    warning: `could not set this record's retry delay to ${seconds} s, so it comes back after the queue's visibility timeout: ${(e as Error).message}`,
                                }),
                            ),
                        );
                    }
                }
            }
        }),
    );
    return { batchItemFailures: failures };
}

/** The source queue's settings for a scheduler Lambda timeout: retries for at least a day. */
export interface QueueRetries {
    /**
     * How long a received record stays hidden: 6 function timeouts (AWS's advice), at least 15
     * minutes. It is also the longest retry delay, and what a failed record waits if setting its
     * growing delay fails.
     */
    visibilityTimeoutSeconds: number;
    /** Deliveries before the dead-letter queue: together at least 24 hours of retries. */
    maxReceiveCount: number;
    /** How long a record is kept at all: longer than the retries. */
    messageRetentionSeconds: number;
}

/** The queue settings for a Lambda timeout. Pure. */
export function queueRetries(lambdaTimeoutSeconds: number): QueueRetries {
    const visibilityTimeoutSeconds = Math.min(43_200, Math.max(900, 6 * lambdaTimeoutSeconds));
    // Deliveries until the growing delays add up to a day.
    let maxReceiveCount = 1;
    for (let waited = 0; waited < 24 * 3600; maxReceiveCount++)
        waited += retryDelaySeconds(maxReceiveCount, visibilityTimeoutSeconds);
    return { visibilityTimeoutSeconds, maxReceiveCount, messageRetentionSeconds: 14 * 24 * 3600 };
}
