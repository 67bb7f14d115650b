/**
 * AWS Secrets Manager, the one call the token sync makes: GetSecretValue of the current version,
 * through the AWS SDK's Secrets Manager client with the function's own credentials. The token sync
 * runs every few minutes, so the SDK's size and cold start cost nothing that matters (measured:
 * the client and what it adds take 16.9 MB unpacked); the scheduler and the sweep, whose cold start
 * matters, leave it out of their packages (see their components' `excludePackages`).
 *
 * The endpoint is the region's, or `AWS_ENDPOINT_URL_SECRETS_MANAGER` (the AWS SDKs' variable for a
 * service endpoint), which the tests point at a local stand-in.
 */
import type * as SecretsManagerSdk from "@aws-sdk/client-secrets-manager";
import { type AwsCredentials } from "./eksToken";
import { classifiedError, type ClassifiedError } from "../core/errors";

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
    return region.startsWith("cn-")
        ? `https://secretsmanager.${region}.amazonaws.com.cn`
        : `https://secretsmanager.${region}.amazonaws.com`;
}

/**
 * Turns a Secrets Manager error answer into one line naming the problem and the fix. Pure, so it is
 * tested as a table. Throttling and server errors are worth retrying; the rest need a change first.
 */
export function classifySecretsManagerFailure(
    status: number,
    type: string | undefined,
    message: string | undefined,
    arn: string,
): SecretsManagerError {
    const code = (type ?? "").split("#").pop() || undefined;
    const what = `reading ${arn} from Secrets Manager`;
    const detail = message ? ` (${message.split("\n")[0]})` : "";
    switch (code) {
        case "ResourceNotFoundException":
            return secretsError(
                `${what}: no such secret, or it has no current value${detail}; check scaledkite:agentTokenSecretArn`,
                false,
                code,
            );
        case "AccessDeniedException":
            return secretsError(
                `${what}: access denied${detail}; pulumi up grants the token sync role secretsmanager:GetSecretValue on this ARN, so check the secret's resource policy`,
                false,
                code,
            );
        case "DecryptionFailure":
            return secretsError(
                `${what}: the secret's KMS key refused to decrypt${detail}; allow the token sync role kms:Decrypt in the key policy`,
                false,
                code,
            );
        case "InvalidRequestException":
            return secretsError(
                `${what}: the secret cannot be read now${detail}; it may be scheduled for deletion: restore it or point scaledkite:agentTokenSecretArn at another`,
                false,
                code,
            );
        case "UnrecognizedClientException":
        case "InvalidSignatureException":
        case "IncompleteSignature":
            return secretsError(
                `${what}: the request's credentials were refused (${code}); check the token sync function's role`,
                false,
                code,
            );
        case "ExpiredTokenException":
            return secretsError(
                `${what}: the request's credentials were refused (${code}); the next attempt takes fresh ones`,
                true,
                code,
            );
        case "ThrottlingException":
        case "InternalServiceError":
            return secretsError(`${what}: Secrets Manager answered ${code}`, true, code);
    }
    const retryable = status === 429 || status >= 500;
    return secretsError(
        `${what}: Secrets Manager answered ${status}${code ? ` ${code}` : ""}${detail}`,
        retryable,
        code,
    );
}

/** The current value of a secret, and its version id. */
export interface SecretVersion {
    value: string;
    versionId?: string;
}

/** Reads the current version of one secret. */
export type SecretReader = () => Promise<SecretVersion>;

/** The package the token sync's reader loads: the scheduler and the sweep leave it out of their Lambdas. */
export const SECRETS_MANAGER_PACKAGE = "@aws-sdk/client-secrets-manager";

/**
 * A reader of the current value of the secret `arn` (its SecretString). `credentials` is called per
 * read, so rotated Lambda credentials are picked up. One attempt per read: createTokenSync retries,
 * with its own delays, what is worth retrying.
 */
export function secretsManagerReader(
    arn: string,
    credentials: () => AwsCredentials,
    opts: { endpoint?: string; timeoutMs?: number } = {},
): SecretReader {
    const parsed = parseSecretArn(arn);
    if (!parsed)
        throw secretsError(
            `${JSON.stringify(arn)} is not a Secrets Manager secret ARN; set scaledkite:agentTokenSecretArn to the secret's full ARN`,
            false,
        );
    const endpoint = opts.endpoint ?? secretsManagerEndpoint(parsed.region);
    const sdk: typeof SecretsManagerSdk = require("@aws-sdk/client-secrets-manager");
    const client = new sdk.SecretsManagerClient({
        region: parsed.region,
        endpoint,
        maxAttempts: 1,
        credentials: async () => credentials(),
        requestHandler: { requestTimeout: opts.timeoutMs ?? 10_000, connectionTimeout: opts.timeoutMs ?? 10_000 },
    });
    return async () => {
        let answer;
        try {
            answer = await client.send(new sdk.GetSecretValueCommand({ SecretId: arn }));
        } catch (e) {
            const err = e as Error & { $metadata?: { httpStatusCode?: number }; code?: string };
            const status = err.$metadata?.httpStatusCode;
            if (status === undefined)
                throw secretsError(
                    `reading ${arn} from Secrets Manager: cannot reach ${new URL(endpoint).origin} (${err.code ?? err.name})`,
                    true,
                );
            // An answer without an error type: the SDK names it Unknown, with no message of the service's.
            const typed = !/^Unknown(Error)?$/.test(err.name);
            throw classifySecretsManagerFailure(
                status,
                typed ? err.name : undefined,
                typed ? err.message : undefined,
                arn,
            );
        }
        if (typeof answer.SecretString !== "string") {
            throw secretsError(
                `reading ${arn} from Secrets Manager: the secret holds binary data, not text; store the agent token as a secret string`,
                false,
            );
        }
        return { value: answer.SecretString, versionId: answer.VersionId };
    };
}
