/**
 * Errors that say whether they are worth retrying.
 *
 * The Lambda throws only what may pass later (EventBridge and Lambda then retry it, and the DLQ keeps
 * it after that); an event that can never be scheduled is logged with its reason and dropped, so a
 * poison event never loops.
 */

/** An event that is not a well-formed Buildkite job event: never retried. */
export class InvalidEventError extends Error {
    readonly retryable = false;
    readonly kind = "invalid";
    constructor(message: string) {
        super(message);
        this.name = "InvalidEventError";
    }
}

/** A configuration value that cannot work; the message names the key and the fix. */
export class ConfigError extends Error {
    readonly retryable = false;
    readonly kind = "config";
    constructor(readonly problems: string[]) {
        super(problems.length === 1 ? problems[0] : `${problems.length} configuration problems: ${problems.join("; ")}`);
        this.name = "ConfigError";
    }
}

/**
 * A failure talking to the Kubernetes API (or the network in front of it).
 * `retryable` says whether the same request may succeed later.
 */
export class KubernetesError extends Error {
    readonly kind = "kubernetes";
    constructor(
        message: string,
        readonly retryable: boolean,
        readonly status?: number,
        readonly reason?: string,
    ) {
        super(message);
        this.name = "KubernetesError";
    }
}

// Plain arrays, not Sets: Pulumi's closure serialization does not carry a Set's contents into the Lambda.
/** HTTP statuses from the API server that may succeed on a later attempt. */
const RETRYABLE_STATUSES = [401, 408, 409, 429, 500, 502, 503, 504];

/** Network error codes of Node's http stack that mean "try again". */
const RETRYABLE_CODES = [
    "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH",
    "ENETUNREACH", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_SOCKET", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT",
];

/** The parts of an API server `Status` body that classification reads. */
export interface ApiStatus {
    reason?: string;
    message?: string;
}

/**
 * Classifies an API server answer (status code and Status body) into a KubernetesError with a
 * message that names the problem and the fix. Pure, so it is tested as a table.
 */
export function classifyApiFailure(status: number, body: ApiStatus | undefined, what: string): KubernetesError {
    const reason = body?.reason;
    const detail = (body?.message ?? "").split("\n")[0];
    if (status === 403 && /exceeded quota/i.test(detail)) {
        return new KubernetesError(
            `${what}: the namespace quota is full (${detail}); will retry once running workers finish`, true, status, reason);
    }
    if (status === 403) {
        return new KubernetesError(
            `${what}: forbidden (${detail}); check the scheduler's RBAC Role and EKS access entry (pulumi up recreates them)`,
            false, status, reason);
    }
    if (status === 401) {
        return new KubernetesError(
            `${what}: unauthorized; the token was refused (expired or the IAM role is not mapped by an EKS access entry); retrying with a new token`,
            true, status, reason);
    }
    if (status === 404) {
        return new KubernetesError(
            `${what}: not found (${detail}); the namespace may be missing: run pulumi up`, false, status, reason);
    }
    if (status === 422 || status === 400) {
        return new KubernetesError(
            `${what}: rejected by the API server as invalid (${detail}); fix the worker settings in the stack config`,
            false, status, reason);
    }
    if (status === 429) {
        return new KubernetesError(`${what}: the API server is throttling requests (429); will retry`, true, status, reason);
    }
    const retryable = RETRYABLE_STATUSES.includes(status) || status >= 500;
    return new KubernetesError(
        `${what}: API server answered ${status}${reason ? ` ${reason}` : ""}${detail ? ` (${detail})` : ""}${retryable ? "; will retry" : ""}`,
        retryable, status, reason);
}

/** Classifies a transport-level failure (no HTTP answer). */
export function classifyNetworkFailure(err: unknown, what: string, server?: string): KubernetesError {
    const e = err as { code?: string; cause?: { code?: string }; message?: string };
    const code = e?.code ?? e?.cause?.code;
    const where = server ? ` ${server}` : "";
    if (code && RETRYABLE_CODES.includes(code)) {
        return new KubernetesError(
            `${what}: cannot reach the Kubernetes API${where} (${code}); check the cluster endpoint and network access; will retry`, true);
    }
    if (code && /CERT|SSL|TLS|SELF_SIGNED/i.test(code)) {
        return new KubernetesError(
            `${what}: TLS failure talking to the Kubernetes API${where} (${code}); check the cluster CA certificate`, false);
    }
    const message = (e?.message ?? String(err)).split("\n")[0];
    return new KubernetesError(`${what}: request to the Kubernetes API${where} failed (${message}); will retry`, true);
}

/** True when an error is one that a later attempt may get past. */
export function isRetryable(err: unknown): boolean {
    return typeof err === "object" && err !== null && (err as { retryable?: unknown }).retryable === true;
}
