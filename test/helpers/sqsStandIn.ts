/**
 * A local stand-in for the one SQS call the scheduler makes (ChangeMessageVisibility, JSON
 * protocol): it checks the SigV4 signature against the local identities, as SQS would, and records
 * each call. Listens on loopback.
 */
import * as http from "http";
import type { AddressInfo } from "net";
import { type LocalIdentity, verifySigV4Request } from "../../k8s/local/awsIdentities";

export interface VisibilityChange {
    who: string;
    queueUrl: string;
    receiptHandle: string;
    seconds: number;
}

export interface SqsStandIn {
    endpoint: string;
    changes: VisibilityChange[];
    /** Answers the next N calls with this error type (400). */
    failNext(type: string, count?: number): void;
    close(): Promise<void>;
}

export async function startSqs(identities: LocalIdentity[]): Promise<SqsStandIn> {
    const changes: VisibilityChange[] = [];
    const failures: string[] = [];
    const server = http.createServer((req, res) => {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => void handle());
        const handle = async () => {
            const error = (type: string, message: string) => {
                res.writeHead(400, { "content-type": "application/x-amz-json-1.0" });
                res.end(JSON.stringify({ __type: `com.amazonaws.sqs#${type}`, message }));
            };
            if (req.headers["x-amz-target"] !== "AmazonSQS.ChangeMessageVisibility")
                return error("UnsupportedOperation", "only ChangeMessageVisibility is served here");
            const verified = await verifySigV4Request(
                { method: req.method ?? "POST", url: req.url ?? "/", headers: req.headers, body },
                identities,
            );
            if (!verified.ok) return error("InvalidClientTokenId", verified.reason);
            if (verified.service !== "sqs")
                return error("SignatureDoesNotMatch", `signed for ${verified.service}, not sqs`);
            const failure = failures.shift();
            if (failure) return error(failure, `injected ${failure}`);
            const request = JSON.parse(body) as { QueueUrl: string; ReceiptHandle: string; VisibilityTimeout: number };
            changes.push({
                who: verified.identity.accessKeyId,
                queueUrl: request.QueueUrl,
                receiptHandle: request.ReceiptHandle,
                seconds: request.VisibilityTimeout,
            });
            res.writeHead(200, { "content-type": "application/x-amz-json-1.0" });
            res.end("{}");
        };
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
        endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        changes,
        failNext(type, count = 1) {
            for (let i = 0; i < count; i++) failures.push(type);
        },
        close: () =>
            new Promise<void>((resolve) => {
                server.closeAllConnections();
                server.close(() => resolve());
            }),
    };
}
