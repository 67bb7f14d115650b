/**
 * The one SQS call the scheduler makes: ChangeMessageVisibility, so a record that failed comes back
 * after a delay that grows with each delivery (batch.ts retryDelaySeconds) instead of after the
 * queue's fixed visibility timeout. Signed with the function's own credentials (awsJson.ts).
 *
 * The endpoint is the region's, or `AWS_ENDPOINT_URL_SQS` (the AWS SDKs' variable for a service
 * endpoint), which the tests point at a local stand-in.
 */
import { awsJsonCaller } from "./awsJson";
import type { AwsCredentials } from "./eksToken";
import { classifiedError } from "../core/errors";

/** Hides a received record for `seconds` more. Throws (one line) when SQS refuses or cannot be reached. */
export type SetVisibility = (queueArn: string, receiptHandle: string, seconds: number) => Promise<void>;

/** The queue URL of a queue ARN (arn:<partition>:sqs:<region>:<account>:<name>); undefined when it is not one. Pure. */
export function queueUrl(queueArn: string): { url: string; region: string } | undefined {
    const m = /^arn:aws[a-z-]*:sqs:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_.-]+)$/.exec(queueArn);
    if (!m) return undefined;
    const host = m[1].startsWith("cn-") ? `sqs.${m[1]}.amazonaws.com.cn` : `sqs.${m[1]}.amazonaws.com`;
    return { url: `https://${host}/${m[2]}/${m[3]}`, region: m[1] };
}

/** A SetVisibility for the function's credentials; one caller per region, made when first needed. */
export function sqsVisibility(credentials: () => AwsCredentials, env: NodeJS.ProcessEnv = process.env): SetVisibility {
    const callers = new Map<string, ReturnType<typeof awsJsonCaller>>();
    return async (queueArn, receiptHandle, seconds) => {
        const queue = queueUrl(queueArn);
        if (!queue)
            throw classifiedError("aws", "SqsError", `${JSON.stringify(queueArn)} is not an SQS queue ARN`, false);
        let call = callers.get(queue.region);
        if (!call) {
            const endpoint = env.AWS_ENDPOINT_URL_SQS || env.AWS_ENDPOINT_URL || new URL(queue.url).origin;
            call = awsJsonCaller({
                service: "sqs",
                region: queue.region,
                endpoint,
                contentType: "application/x-amz-json-1.0",
                credentials,
            });
            callers.set(queue.region, call);
        }
        const res = await call(
            "AmazonSQS.ChangeMessageVisibility",
            { QueueUrl: queue.url, ReceiptHandle: receiptHandle, VisibilityTimeout: seconds },
            3_000,
        );
        if (!res.ok)
            throw classifiedError(
                "aws",
                "SqsError",
                `SQS answered ${res.status}${res.errorType ? ` ${res.errorType.split("#").pop()}` : ""}${res.message ? ` (${res.message.split("\n")[0]})` : ""}`,
                res.status >= 500 || res.status === 429 || /Throttl/.test(res.errorType ?? ""),
            );
    };
}
