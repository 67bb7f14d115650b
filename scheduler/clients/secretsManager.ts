/**
 * AWS Secrets Manager, the one call the token sync makes: GetSecretValue of the current version,
 * signed with SigV4 from the function's own credentials (awsJson.ts: no SDK).
 *
 * The endpoint is the region's, or `AWS_ENDPOINT_URL_SECRETS_MANAGER` (the AWS SDKs' variable for a
 * service endpoint), which the tests point at a local stand-in.
 */
import { awsJsonCaller, AwsUnreachable } from "./awsJson";
import { AwsCredentials } from "./eksToken";
import { classifiedError, ClassifiedError } from "../core/errors";

/** A failure reading the secret; `retryable` says whether a later attempt may get past it. */
export type SecretsManagerError = ClassifiedError<"secrets-manager", { code?: string }>;

function secretsError(message: string, retryable: boolean, code?: string): SecretsManagerError {
    return classifiedError("secrets-manager", "SecretsManagerError", message, retryable, { code });
}

/** The parts of a Secrets Manager ARN: arn:<partition>:secretsmanager:<region>:<account>:secret:<name>-<6 chars>. */
export interface SecretArn {
    partition: string;
    region: string;
    account: string;
    /** The secret's name (without the 6-character suffix Secrets Manager adds). */
    name: string;
}

export const SECRET_ARN = /^arn:(aws[a-z-]*):secretsmanager:([a-z0-9-]+):(\d{12}):secret:(.+)-[A-Za-z0-9]{6}$/;

/** Parses a full secret ARN; undefined when it is not one. Pure. */
export function parseSecretArn(arn: string): SecretArn | undefined {
    const m = SECRET_ARN.exec(arn);
    return m ? { partition: m[1], region: m[2], account: m[3], name: m[4] } : undefined;
}

/** The regional Secrets Manager endpoint, or the override in the environment. */
export function secretsManagerEndpoint(region: string, env: NodeJS.ProcessEnv = process.env): string {
    const override = env.AWS_ENDPOINT_URL_SECRETS_MANAGER || env.AWS_ENDPOINT_URL;
    if (override) return override.replace(/\/$/, "");
    return region.startsWith("cn-") ? `https://secretsmanager.${region}.amazonaws.com.cn` : `https://secretsmanager.${region}.amazonaws.com`;
}

/**
 * Turns a Secrets Manager error answer into one line naming the problem and the fix. Pure, so it is
 * tested as a table. Throttling and server errors are worth retrying; the rest need a change first.
 */
export function classifySecretsManagerFailure(status: number, type: string | undefined, message: string | undefined, arn: string): SecretsManagerError {
    const code = (type ?? "").split("#").pop() || undefined;
    const what = `reading ${arn} from Secrets Manager`;
    const detail = message ? ` (${message.split("\n")[0]})` : "";
    switch (code) {
        case "ResourceNotFoundException":
            return secretsError(`${what}: no such secret, or it has no current value${detail}; check scaledkite:agentTokenSecretArn`, false, code);
        case "AccessDeniedException":
            return secretsError(`${what}: access denied${detail}; pulumi up grants the token sync role secretsmanager:GetSecretValue on this ARN, so check the secret's resource policy`, false, code);
        case "DecryptionFailure":
            return secretsError(`${what}: the secret's KMS key refused to decrypt${detail}; allow the token sync role kms:Decrypt in the key policy`, false, code);
        case "InvalidRequestException":
            return secretsError(`${what}: the secret cannot be read now${detail}; it may be scheduled for deletion: restore it or point scaledkite:agentTokenSecretArn at another`, false, code);
        case "UnrecognizedClientException":
        case "InvalidSignatureException":
        case "IncompleteSignature":
            return secretsError(`${what}: the request's credentials were refused (${code}); check the token sync function's role`, false, code);
        case "ExpiredTokenException":
            return secretsError(`${what}: the request's credentials were refused (${code}); will retry with fresh credentials`, true, code);
        case "ThrottlingException":
        case "InternalServiceError":
            return secretsError(`${what}: Secrets Manager answered ${code}; will retry`, true, code);
    }
    const retryable = status === 429 || status >= 500;
    return secretsError(`${what}: Secrets Manager answered ${status}${code ? ` ${code}` : ""}${detail}${retryable ? "; will retry" : ""}`, retryable, code);
}

/** The current value of a secret, and its version id. */
export interface SecretVersion {
    value: string;
    versionId?: string;
}

/** Reads the current version of one secret. */
export type SecretReader = () => Promise<SecretVersion>;

/**
 * A reader of the current value of the secret `arn` (its SecretString). `credentials` is called per
 * read, so rotated Lambda credentials are picked up.
 */
export function secretsManagerReader(arn: string, credentials: () => AwsCredentials, opts: { endpoint?: string; timeoutMs?: number } = {}): SecretReader {
    const parsed = parseSecretArn(arn);
    if (!parsed) throw secretsError(`${JSON.stringify(arn)} is not a Secrets Manager secret ARN; set scaledkite:agentTokenSecretArn to the secret's full ARN`, false);
    const call = awsJsonCaller({
        service: "secretsmanager", region: parsed.region, endpoint: opts.endpoint ?? secretsManagerEndpoint(parsed.region),
        contentType: "application/x-amz-json-1.1", credentials,
    });
    return async () => {
        let res;
        try {
            res = await call("secretsmanager.GetSecretValue", { SecretId: arn }, opts.timeoutMs ?? 10_000);
        } catch (e) {
            if (e instanceof AwsUnreachable) throw secretsError(`reading ${arn} from Secrets Manager: cannot reach ${e.endpoint} (${e.code}); will retry`, true);
            throw e;
        }
        if (!res.ok) throw classifySecretsManagerFailure(res.status, res.errorType, res.message, arn);
        const answer = res.body as { SecretString?: unknown; VersionId?: string };
        if (typeof answer.SecretString !== "string") {
            throw secretsError(`reading ${arn} from Secrets Manager: the secret holds binary data, not text; store the agent token as a secret string`, false);
        }
        return { value: answer.SecretString, versionId: answer.VersionId };
    };
}
