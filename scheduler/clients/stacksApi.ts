/**
 * Buildkite's Stacks API, the official polling API for schedulers: the part the sweep uses (register
 * a stack, list a queue's scheduled jobs, fail a job that cannot run, ask jobs' states). Global `fetch` only, so the Lambda loads nothing for it.
 *
 * Rate limits answer 429 with Retry-After: the client waits (bounded) and tries again. 5xx and
 * network failures are errors worth retrying (the caller says who retries); 401/403/404 are not.
 */

import { classifiedError, type ClassifiedError } from "../core/errors";
import type { StackNotification } from "../core/notices";

export const DEFAULT_AGENT_ENDPOINT = "https://agent.buildkite.com/v3";

/** A scheduled job as the Stacks API lists it. */
export interface StacksJob {
    id: string;
    priority?: number;
    agent_query_rules?: string[];
    scheduled_at?: string;
    pipeline?: { slug?: string; uuid?: string };
    build?: { number?: number; uuid?: string; branch?: string; commit?: string };
    step?: { key?: string; label?: string };
}

/** A job as the Stacks API shows it to its stack: its whole environment and its command. */
export interface StacksJobDetail {
    id: string;
    /** The job's environment, e.g. BUILDKITE_PLUGINS (a JSON string) and BUILDKITE_IMAGE (the step's image). */
    env: Record<string, string>;
    command: string;
}

export type StacksApiError = ClassifiedError<"stacks-api", { status?: number }>;

function stacksError(message: string, retryable: boolean, status?: number): StacksApiError {
    return classifiedError("stacks-api", "StacksApiError", message, retryable, { status });
}

export interface StacksApi {
    register(stackKey: string, queueKey: string, metadata?: Record<string, string>): Promise<void>;
    /** Every scheduled job of a queue (all pages, oldest first), and whether dispatch is paused. */
    scheduledJobs(stackKey: string, queueKey: string): Promise<{ jobs: StacksJob[]; paused: boolean }>;
    /** One job's environment and command (what its step asks of its pod). */
    job(stackKey: string, jobUuid: string): Promise<StacksJobDetail>;
    /** Fails a job that cannot run, with a reason the user sees (at most 4 KB). */
    finish(stackKey: string, jobUuid: string, detail: string): Promise<void>;
    /**
     * Reserves jobs for this stack for `expirySeconds` (again: extends), in batches: reserved jobs leave
     * the scheduled list, and no other stack key may reserve them until the reservation expires. The
     * jobs another stack holds, or that are no longer scheduled, come back as not reserved.
     */
    reserve(
        stackKey: string,
        jobUuids: string[],
        expirySeconds: number,
    ): Promise<{ reserved: string[]; notReserved: string[] }>;
    /** The states of jobs (e.g. "scheduled", "canceled"), asked in batches. */
    jobStates(stackKey: string, jobUuids: string[]): Promise<Record<string, string>>;
    /** A light listing (one job) of a queue: Buildkite shows a queue Connected while a stack lists it. */
    heartbeat(stackKey: string, queueKey: string): Promise<void>;
    /** Messages on jobs' timelines (each detail at most 256 characters), in batches. */
    notify(stackKey: string, notifications: StackNotification[]): Promise<void>;
}

/** The Stacks API's limit on a notification's detail. */
export const MAX_NOTIFICATION_DETAIL = 256;

export interface StacksApiOptions {
    endpoint?: string;
    /** Longest single wait on a 429 before giving up until the next sweep. */
    maxRetryAfterSeconds?: number;
    sleep?: (ms: number) => Promise<void>;
}

/** A Stacks API client authenticated with a cluster agent token. */
export function stacksApi(token: () => Promise<string> | string, opts: StacksApiOptions = {}): StacksApi {
    const endpoint = (opts.endpoint ?? DEFAULT_AGENT_ENDPOINT).replace(/\/$/, "");
    const maxWait = (opts.maxRetryAfterSeconds ?? 10) * 1000;
    const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

    async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
        const what = `Buildkite Stacks API ${method} ${path.split("?")[0]}`;
        // Reading the token can fail on its own (e.g. the Secret is not readable): that error says why.
        const agentToken = await token();
        for (let attempt = 1; ; attempt++) {
            let res: Response;
            try {
                res = await fetch(`${endpoint}${path}`, {
                    method,
                    headers: {
                        authorization: `Token ${agentToken}`,
                        "content-type": "application/json",
                        accept: "application/json",
                    },
                    body: body === undefined ? undefined : JSON.stringify(body),
                    signal: AbortSignal.timeout(15_000),
                });
            } catch (e) {
                const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
                throw stacksError(`${what}: unreachable (${cause})`, true);
            }
            if (res.status === 429 && attempt <= 3) {
                const wait = Math.max(0, Number(res.headers.get("retry-after") ?? "1")) * 1000;
                if (wait <= maxWait) {
                    await res.arrayBuffer();
                    await sleep(wait);
                    continue;
                }
            }
            const text = await res.text();
            if (res.ok) return (text ? JSON.parse(text) : {}) as T;
            const message = (() => {
                try {
                    return String(JSON.parse(text).message ?? text);
                } catch {
                    return text;
                }
            })().slice(0, 200);
            if (res.status === 401 || res.status === 403) {
                throw stacksError(
                    `${what}: ${res.status} (${message}); the agent token must be a cluster agent token with access to this queue`,
                    false,
                    res.status,
                );
            }
            const retryable = res.status === 429 || res.status >= 500;
            throw stacksError(`${what}: ${res.status} (${message})`, retryable, res.status);
        }
    }

    return {
        async register(stackKey, queueKey, metadata = {}) {
            await call("POST", "/stacks/register", { key: stackKey, type: "custom", queue_key: queueKey, metadata });
        },
        async scheduledJobs(stackKey, queueKey) {
            const jobs: StacksJob[] = [];
            let paused = false;
            let after: string | undefined;
            for (let page = 0; page < 100; page++) {
                const q = new URLSearchParams({ queue_key: queueKey, limit: "1000", ...(after ? { after } : {}) });
                const r = await call<{
                    jobs?: StacksJob[];
                    page_info?: { has_next_page?: boolean; end_cursor?: string };
                    cluster_queue?: { dispatch_paused?: boolean };
                }>("GET", `/stacks/${encodeURIComponent(stackKey)}/scheduled-jobs?${q}`);
                paused = paused || Boolean(r.cluster_queue?.dispatch_paused);
                jobs.push(...(r.jobs ?? []));
                if (!r.page_info?.has_next_page || !r.page_info.end_cursor) break;
                after = r.page_info.end_cursor;
            }
            return { jobs, paused };
        },
        async job(stackKey, jobUuid) {
            const r = await call<{ id?: unknown; env?: unknown; command?: unknown }>(
                "GET",
                `/stacks/${encodeURIComponent(stackKey)}/jobs/${encodeURIComponent(jobUuid)}`,
            );
            return {
                id: String(r.id ?? jobUuid),
                env: envMap(r.env),
                command: typeof r.command === "string" ? r.command : "",
            };
        },
        async finish(stackKey, jobUuid, detail) {
            await call("POST", `/stacks/${encodeURIComponent(stackKey)}/jobs/${encodeURIComponent(jobUuid)}/finish`, {
                exit_status: -1,
                detail: detail.slice(0, 4000),
            });
        },
        async reserve(stackKey, jobUuids, expirySeconds) {
            const out = { reserved: [] as string[], notReserved: [] as string[] };
            for (let i = 0; i < jobUuids.length; i += 1000) {
                const r = await call<{ reserved?: unknown; not_reserved?: unknown }>(
                    "PUT",
                    `/stacks/${encodeURIComponent(stackKey)}/scheduled-jobs/batch-reserve`,
                    { job_uuids: jobUuids.slice(i, i + 1000), reservation_expiry_seconds: expirySeconds },
                );
                const strings = (v: unknown) =>
                    Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
                out.reserved.push(...strings(r.reserved));
                out.notReserved.push(...strings(r.not_reserved));
            }
            return out;
        },
        async jobStates(stackKey, jobUuids) {
            // No prototype: a uuid such as "constructor" or "__proto__" reads nothing it was not given.
            const states = Object.create(null) as Record<string, string>;
            for (let i = 0; i < jobUuids.length; i += 100) {
                const r = await call<{ states?: Record<string, string> }>(
                    "POST",
                    `/stacks/${encodeURIComponent(stackKey)}/jobs/get-states`,
                    { job_uuids: jobUuids.slice(i, i + 100) },
                );
                for (const [uuid, state] of Object.entries(r.states ?? {}))
                    if (typeof state === "string") states[uuid] = state;
            }
            return states;
        },
        async heartbeat(stackKey, queueKey) {
            const q = new URLSearchParams({ queue_key: queueKey, limit: "1" });
            await call("GET", `/stacks/${encodeURIComponent(stackKey)}/scheduled-jobs?${q}`);
        },
        async notify(stackKey, notifications) {
            for (let i = 0; i < notifications.length; i += 100) {
                const batch = notifications.slice(i, i + 100).map((n) => ({
                    ...n,
                    detail:
                        n.detail.length > MAX_NOTIFICATION_DETAIL
                            ? `${n.detail.slice(0, MAX_NOTIFICATION_DETAIL - 1)}…`
                            : n.detail,
                }));
                await call("POST", `/stacks/${encodeURIComponent(stackKey)}/notifications`, { notifications: batch });
            }
        },
    };
}

/**
 * A job's environment as a map, whether the API gives an object or `KEY=value` lines (values that
 * are not strings are dropped: the job's environment is text). Pure.
 */
export function envMap(env: unknown): Record<string, string> {
    const out: Record<string, string> = Object.create(null) as Record<string, string>;
    if (Array.isArray(env)) {
        for (const line of env) {
            if (typeof line !== "string") continue;
            const at = line.indexOf("=");
            if (at > 0) out[line.slice(0, at)] = line.slice(at + 1);
        }
    } else if (env && typeof env === "object") {
        for (const [k, v] of Object.entries(env)) if (typeof v === "string") out[k] = v;
    }
    return out;
}
