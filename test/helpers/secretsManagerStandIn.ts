/**
 * A local stand-in for AWS Secrets Manager's GetSecretValue (JSON 1.1 protocol): SigV4 signatures
 * verified against the local identities, a per-secret list of identities allowed to read (as the
 * IAM policy pulumi up writes would), and AWS's error shapes (HTTP 400 with `__type`).
 */
import * as http from "http";
import { type AddressInfo } from "net";
import { type LocalIdentity, verifySigV4Request } from "../../k8s/local/awsIdentities";

export interface StoredSecret {
    value: string;
    versionId: string;
    /** Identities whose policy allows GetSecretValue on it. */
    readers: string[];
    /** Answer DecryptionFailure (the KMS key refuses). */
    kmsRefuses?: boolean;
}

export interface SecretsManagerStandIn {
    endpoint: string;
    secrets: Map<string, StoredSecret>;
    /** Puts a new current value (as PutSecretValue or a rotation would); returns the new version id. */
    put(arn: string, value: string): string;
    /** Every request: [identity access key or "-", the secret id asked for, the answer's status]. */
    requests: [string, string, number][];
    /** Answers the next N requests with this error type. */
    failNext(type: string, count?: number): void;
    close(): Promise<void>;
}

let versions = 0;
const newVersion = () => `00000000-0000-4000-8000-${String(++versions).padStart(12, "0")}`;

export async function startSecretsManager(identities: LocalIdentity[]): Promise<SecretsManagerStandIn> {
    const secrets = new Map<string, StoredSecret>();
    const requests: [string, string, number][] = [];
    const failures: string[] = [];
    const server = http.createServer((req, res) => {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => void handle());
        const handle = async () => {
            let who = "-";
            let id = "";
            const send = (status: number, obj: unknown) => {
                requests.push([who, id, status]);
                res.writeHead(status, { "content-type": "application/x-amz-json-1.1" });
                res.end(JSON.stringify(obj));
            };
            const error = (type: string, message: string, status = 400) => send(status, { __type: type, message });
            if (req.method !== "POST" || req.headers["x-amz-target"] !== "secretsmanager.GetSecretValue")
                return error("UnknownOperationException", "only GetSecretValue is served here");
            const verified = await verifySigV4Request(
                { method: req.method, url: req.url ?? "/", headers: req.headers, body },
                identities,
            );
            if (!verified.ok) return error("UnrecognizedClientException", verified.reason);
            who = verified.identity.accessKeyId;
            if (verified.service !== "secretsmanager")
                return error("InvalidSignatureException", `signed for ${verified.service}, not secretsmanager`);
            let request: { SecretId?: unknown };
            try {
                request = JSON.parse(body);
            } catch {
                return error("SerializationException", "the body is not JSON");
            }
            id = String(request.SecretId ?? "");
            const failure = failures.shift();
            if (failure) return error(failure, `injected ${failure}`, failure === "InternalServiceError" ? 500 : 400);
            const secret = secrets.get(id);
            if (!secret) return error("ResourceNotFoundException", "Secrets Manager can't find the specified secret.");
            if (!secret.readers.includes(who)) {
                return error(
                    "AccessDeniedException",
                    `User: ${verified.identity.username} is not authorized to perform: secretsmanager:GetSecretValue on resource: ${id}`,
                );
            }
            if (secret.kmsRefuses)
                return error(
                    "DecryptionFailure",
                    "Secrets Manager can't decrypt the protected secret text using the provided KMS key.",
                );
            return send(200, {
                ARN: id,
                Name: id.split(":").pop(),
                SecretString: secret.value,
                VersionId: secret.versionId,
                VersionStages: ["AWSCURRENT"],
                CreatedDate: Date.now() / 1000,
            });
        };
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    return {
        endpoint: `http://127.0.0.1:${port}`,
        secrets,
        requests,
        put(arn, value) {
            const s = secrets.get(arn);
            if (!s) throw new Error(`no secret ${arn}`);
            s.value = value;
            s.versionId = newVersion();
            return s.versionId;
        },
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

/** A stored secret readable by `readers`, with a fresh version id. */
export function storedSecret(value: string, readers: LocalIdentity[]): StoredSecret {
    return { value, versionId: newVersion(), readers: readers.map((r) => r.accessKeyId) };
}

/** A CloudTrail event as EventBridge delivers it for a Secrets Manager call. */
export function secretChangedEvent(eventName: string, secretId: string): object {
    const rotation = eventName === "RotationSucceeded";
    return {
        version: "0",
        id: "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": rotation ? "AWS Service Event via CloudTrail" : "AWS API Call via CloudTrail",
        source: "aws.secretsmanager",
        account: "000000000000",
        time: new Date().toISOString(),
        region: "us-east-1",
        resources: [],
        detail: {
            eventVersion: "1.08",
            eventSource: "secretsmanager.amazonaws.com",
            eventName,
            awsRegion: "us-east-1",
            ...(rotation
                ? { additionalEventData: { SecretId: secretId } }
                : { requestParameters: { secretId, clientRequestToken: "c0ffee" }, responseElements: null }),
        },
    };
}
