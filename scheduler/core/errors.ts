/**
 * Errors that say whether they are worth retrying.
 *
 * The Lambda throws only what may pass later (EventBridge and Lambda then retry it, and the DLQ keeps
 * it after that); an event that can never be scheduled is logged with its reason and dropped, so a
 * poison event never loops.
 */

// The errors are plain Error objects with extra fields, made by functions, not subclasses of Error:
// Pulumi's closure serialization turns classes into functions, and an Error subclass made that way
// loses its message inside the Lambda.

/** An error of an outside service (`kind`) that says whether retrying may help. */
export type ClassifiedError<K extends string, X extends object = object> = Error & { kind: K; retryable: boolean } & X;

export function classifiedError<K extends string, X extends object = object>(
    kind: K,
    name: string,
    message: string,
    retryable: boolean,
    extra?: X,
): ClassifiedError<K, X> {
    return Object.assign(new Error(message), { name, kind, retryable }, extra) as ClassifiedError<K, X>;
}

/** An event that is not a well-formed Buildkite job event: never retried. */
export interface InvalidEventError extends Error {
    kind: "invalid-event";
    retryable: false;
}

export function invalidEvent(message: string): InvalidEventError {
    return Object.assign(new Error(message), {
        name: "InvalidEventError",
        kind: "invalid-event" as const,
        retryable: false as const,
    });
}

export function isInvalidEvent(e: unknown): e is InvalidEventError {
    return e instanceof Error && (e as Partial<InvalidEventError>).kind === "invalid-event";
}

/** Configuration values that cannot work; each problem names the key and the fix. */
export interface ConfigError extends Error {
    kind: "config";
    retryable: false;
    problems: string[];
}

export function configError(problems: string[]): ConfigError {
    const message =
        problems.length === 1 ? problems[0] : `${problems.length} configuration problems:\n  ${problems.join("\n  ")}`;
    return Object.assign(new Error(message), {
        name: "ConfigError",
        kind: "config" as const,
        retryable: false as const,
        problems,
    });
}

export function isConfigError(e: unknown): e is ConfigError {
    return e instanceof Error && (e as Partial<ConfigError>).kind === "config";
}

/**
 * A failure talking to the Kubernetes API (or the network in front of it).
 * `retryable` says whether the same request may succeed later.
 */
export interface KubernetesError extends Error {
    kind: "kubernetes";
    retryable: boolean;
    status?: number;
    reason?: string;
    /** The API server's own words (its Status message, first line), where it gave some. */
    detail?: string;
}

export function kubernetesError(
    message: string,
    retryable: boolean,
    status?: number,
    reason?: string,
    detail?: string,
): KubernetesError {
    return Object.assign(new Error(message), {
        name: "KubernetesError",
        kind: "kubernetes" as const,
        retryable,
        status,
        reason,
        ...(detail ? { detail } : {}),
    });
}

export function isKubernetesError(e: unknown): e is KubernetesError {
    return e instanceof Error && (e as Partial<KubernetesError>).kind === "kubernetes";
}

// Plain arrays, not Sets: Pulumi's closure serialization does not carry a Set's contents into the Lambda.
/** HTTP statuses from the API server that may succeed on a later attempt. */
const RETRYABLE_STATUSES = [401, 408, 409, 429, 500, 502, 503, 504];

/** Network error codes of Node's http stack that mean "try again". */
const RETRYABLE_CODES = [
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "EPIPE",
    "ENOTFOUND",
    "EAI_AGAIN",
    "EHOSTUNREACH",
    "ENETUNREACH",
    "UND_ERR_CONNECT_TIMEOUT",
    "UND_ERR_SOCKET",
    "UND_ERR_HEADERS_TIMEOUT",
    "UND_ERR_BODY_TIMEOUT",
];

/** The parts of an API server `Status` body that classification reads. */
export interface ApiStatus {
    reason?: string;
    message?: string;
}

/** The API server refused a create because the namespace's ResourceQuota (the spend cap) is full. */
export function isQuotaFull(err: unknown): boolean {
    return isKubernetesError(err) && err.status === 403 && err.reason === QUOTA_FULL;
}
const QUOTA_FULL = "QuotaFull";

/**
 * Classifies an API server answer (status code and Status body) into a KubernetesError with a
 * message that names the problem and the fix. Pure, so it is tested as a table.
 */
export function classifyApiFailure(status: number, body: ApiStatus | undefined, what: string): KubernetesError {
    const reason = body?.reason;
    const detail = (body?.message ?? "").split("\n")[0];
    if (status === 403 && /exceeded quota/i.test(detail)) {
        return kubernetesError(
            `${what}: the namespace quota is full (${detail}); it has room again once running workers finish`,
            true,
            status,
            QUOTA_FULL,
        );
    }
    if (status === 403) {
        return kubernetesError(
            `${what}: forbidden (${detail}); check the scheduler's RBAC Role and EKS access entry (pulumi up recreates them)`,
            false,
            status,
            reason,
        );
    }
    if (status === 401) {
        return kubernetesError(
            `${what}: unauthorized; the token was refused (expired or the IAM role is not mapped by an EKS access entry); the next attempt signs a new one`,
            true,
            status,
            reason,
        );
    }
    if (status === 404) {
        return kubernetesError(
            `${what}: not found (${detail}); the namespace may be missing: run pulumi up`,
            false,
            status,
            reason,
        );
    }
    if (status === 422 || status === 400) {
        return kubernetesError(
            `${what}: rejected by the API server as invalid (${detail}); fix the worker settings in the stack config`,
            false,
            status,
            reason,
            detail,
        );
    }
    if (status === 429) {
        return kubernetesError(`${what}: the API server is throttling requests (429)`, true, status, reason);
    }
    const retryable = RETRYABLE_STATUSES.includes(status) || status >= 500;
    return kubernetesError(
        `${what}: API server answered ${status}${reason ? ` ${reason}` : ""}${detail ? ` (${detail})` : ""}`,
        retryable,
        status,
        reason,
    );
}

/** Classifies a transport-level failure (no HTTP answer). */
export function classifyNetworkFailure(err: unknown, what: string, server?: string): KubernetesError {
    const e = err as { code?: string; cause?: { code?: string }; message?: string };
    const code = e?.code ?? e?.cause?.code;
    const where = server ? ` ${server}` : "";
    if (code && RETRYABLE_CODES.includes(code)) {
        return kubernetesError(
            `${what}: cannot reach the Kubernetes API${where} (${code}); check the cluster endpoint and network access`,
            true,
        );
    }
    if (code && /CERT|SSL|TLS|SELF_SIGNED/i.test(code)) {
        return kubernetesError(
            `${what}: TLS failure talking to the Kubernetes API${where} (${code}); check the cluster CA certificate`,
            false,
        );
    }
    const cause = (e as { cause?: { message?: string } })?.cause?.message;
    const message = `${e?.message ?? String(err)}${cause ? `: ${cause}` : ""}`.split("\n")[0];
    return kubernetesError(`${what}: request to the Kubernetes API${where} failed (${message})`, true);
}

/** True when an error is one that a later attempt may get past. */
export function isRetryable(err: unknown): boolean {
    return typeof err === "object" && err !== null && (err as { retryable?: unknown }).retryable === true;
}

/**
 * What each edge says of a failure worth retrying. Errors carry only `retryable`; the edge that
 * reports them knows what happens next, and adds it (describeFailure).
 */
export const RETRY_WORDS = {
    /** The scheduler and the token sync: the event stays in its queue, the sync runs again. */
    lambda: "will retry",
    sweep: "the next sweep tries again",
    cli: "worth retrying: run the command again",
} as const;

/** A failure as an edge says it: the message's first line and, when worth retrying, the edge's words. Pure. */
export function describeFailure(err: unknown, retryWords: string): string {
    const message = ((err as Error | undefined)?.message ?? String(err)).split("\n")[0];
    return isRetryable(err) ? `${message}; ${retryWords}` : message;
}

/**
 * The error a Lambda throws, with its stack cut to the one-line message: Lambda reports a thrown
 * error's stack (in the log, and to `pulumi up` through an Invocation), and the message already says
 * what failed and what to do.
 */
export function oneLine<E extends Error>(e: E, retryWords?: string): E {
    e.stack = `${e.name}: ${retryWords ? describeFailure(e, retryWords) : e.message.split("\n")[0]}`;
    return e;
}
