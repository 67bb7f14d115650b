/**
 * A local stand-in for Buildkite's Stacks API that follows its documented contract for what the
 * scheduler and the sweep use: registration, paginated scheduled jobs per queue (oldest first) with
 * page_info and cluster_queue.dispatch_paused, token auth, one job's env and command, job states,
 * finish, timeline notifications (detail at most 256 characters), reservations, Buildkite's rate
 * limits per stack (429 with Retry-After when a stack key makes more calls of one kind in a second
 * than its limit), and, on request, 429 or 5xx answers and a round trip of a set latency.
 */
import * as http from "http";
import type { StacksJob, StacksJobDetail } from "../../scheduler/clients/stacksApi";

export interface StandIn {
    endpoint: string;
    token: string;
    /** Scheduled jobs by queue key. */
    scheduled: Map<string, StacksJob[]>;
    paused: Set<string>;
    registered: Map<string, { queue_key: string; type: string }>;
    /** What GET /stacks/:key/jobs/:uuid answers: each job's env and command (404 for others). */
    jobs: Map<string, StacksJobDetail>;
    /** Milliseconds every answer waits (a round trip to Buildkite). */
    latencyMs: number;
    /** Jobs failed through finish: uuid -> detail. */
    finished: Map<string, string>;
    /** Reservations: job uuid -> the stack key that holds it, and until when (epoch ms). */
    reservations: Map<string, { stackKey: string; until: number }>;
    /** When each job was finished (epoch ms), and how many finish calls it got (Buildkite allows one). */
    finishedAt: Map<string, number>;
    finishCalls: Map<string, number>;
    /** Job states get-states answers (default "scheduled"). */
    states: Map<string, string>;
    /** Timeline notifications received, in order. */
    notifications: { job_uuid: string; detail: string; timestamp: string }[];
    /** When each queue was last listed (ms): Buildkite shows a queue Connected for about 30 s after. */
    listedAt: Map<string, number[]>;
    /** Answers the next N finish requests with 503. */
    failFinish: number;
    /** Requests answered 429 because a stack went over its rate limit: "<stack key> <kind>". */
    throttled: string[];
    /** Answers the next N requests with this status (429 carries Retry-After: 1). */
    failNext(status: number, count?: number): void;
    requests: string[];
    pageSize: number;
    close(): Promise<void>;
}

/**
 * Starts the stand-in. `jobStateOf` links it to the agent API stand-in, so get-states answers what the
 * agents did to each job (accepted, running, finished) as Buildkite would; states set here, and
 * finish, come first; "scheduled" otherwise.
 */
/** Calls a stack may make per second, by kind (Buildkite's Stacks API docs; registration is not listed). */
export const STACKS_RATE_LIMITS = { list: 10, reserve: 10, show: 1000, states: 20, finish: 100, notifications: 200 };

/** Which rate limit a request counts against, and for which stack key. */
function rateKind(method: string, path: string): { kind: keyof typeof STACKS_RATE_LIMITS; stack: string } | undefined {
    const m = /^\/v3\/stacks\/([^/]+)\/(.*)$/.exec(path);
    if (!m || m[1] === "register") return undefined;
    const rest = m[2];
    const kind: keyof typeof STACKS_RATE_LIMITS | undefined =
        method === "GET" && rest === "scheduled-jobs"
            ? "list"
            : method === "PUT" && rest === "scheduled-jobs/batch-reserve"
              ? "reserve"
              : method === "POST" && rest === "jobs/get-states"
                ? "states"
                : method === "POST" && rest === "notifications"
                  ? "notifications"
                  : method === "POST" && rest.endsWith("/finish")
                    ? "finish"
                    : method === "GET" && rest.startsWith("jobs/")
                      ? "show"
                      : undefined;
    return kind && { kind, stack: decodeURIComponent(m[1]) };
}

export async function startStacksApi(
    token = "bkct_local_cluster_token",
    jobStateOf: (uuid: string) => string | undefined = () => undefined,
): Promise<StandIn> {
    const scheduled = new Map<string, StacksJob[]>();
    const paused = new Set<string>();
    const registered = new Map<string, { queue_key: string; type: string }>();
    const finished = new Map<string, string>();
    const finishedAt = new Map<string, number>();
    const finishCalls = new Map<string, number>();
    const reservations = new Map<string, { stackKey: string; until: number }>();
    const held = (uuid: string) => {
        const r = reservations.get(uuid);
        return r && r.until > Date.now() ? r : undefined;
    };
    const states = new Map<string, string>();
    const failures: number[] = [];
    const requests: string[] = [];
    const throttled: string[] = [];
    /** When each (stack key, kind) was called in the last second. */
    const calls = new Map<string, number[]>();
    const overLimit = (method: string, path: string): string | undefined => {
        const r = rateKind(method, path);
        if (!r) return undefined;
        const key = `${r.stack} ${r.kind}`;
        const now = Date.now();
        const recent = (calls.get(key) ?? []).filter((t) => now - t < 1000);
        if (recent.length >= STACKS_RATE_LIMITS[r.kind]) return key;
        calls.set(key, [...recent, now]);
        return undefined;
    };
    const notifications: StandIn["notifications"] = [];
    const listedAt = new Map<string, number[]>();
    const jobs = new Map<string, StacksJobDetail>();
    const state = { pageSize: 1000, failFinish: 0, latencyMs: 0 };

    const server = http.createServer((req, res) => {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => void delay(state.latencyMs).then(answer));
        function answer() {
            const url = new URL(req.url!, "http://x");
            requests.push(`${req.method} ${url.pathname}`);
            const send = (status: number, obj: unknown, headers: Record<string, string> = {}) => {
                res.writeHead(status, { "content-type": "application/json", ...headers });
                res.end(JSON.stringify(obj));
            };
            if (req.headers.authorization !== `Token ${token}`) return send(401, { message: "Unauthorized" });
            const failure = failures.shift();
            if (failure === 429)
                return send(429, { message: "Too many requests" }, { "retry-after": "1", "ratelimit-remaining": "0" });
            if (failure) return send(failure, { message: "Internal error" });
            const limited = overLimit(req.method!, url.pathname);
            if (limited) {
                throttled.push(limited);
                return send(429, { message: "Too many requests" }, { "retry-after": "1", "ratelimit-remaining": "0" });
            }
            const show = /^\/v3\/stacks\/([^/]+)\/jobs\/([^/]+)$/.exec(url.pathname);
            if (req.method === "GET" && show) {
                const job = jobs.get(decodeURIComponent(show[2]));
                return job ? send(200, job) : send(404, { message: "No job found" });
            }

            if (req.method === "POST" && url.pathname === "/v3/stacks/register") {
                const b = JSON.parse(body);
                if (!b.key || !b.queue_key || b.type !== "custom")
                    return send(422, { message: "key, type custom and queue_key are required" });
                registered.set(`${b.key}/${b.queue_key}`, b);
                return send(200, { key: b.key, type: b.type, queue_key: b.queue_key, state: "connected" });
            }
            const m = /^\/v3\/stacks\/([^/]+)\/scheduled-jobs$/.exec(url.pathname);
            if (req.method === "GET" && m) {
                const queue = url.searchParams.get("queue_key") ?? "";
                if (!registered.has(`${decodeURIComponent(m[1])}/${queue}`))
                    return send(404, { message: "No stack registered for this queue" });
                listedAt.set(queue, [...(listedAt.get(queue) ?? []), Date.now()]);
                const limit = Math.min(Number(url.searchParams.get("limit") ?? "100"), 1000, state.pageSize);
                const all = [...(scheduled.get(queue) ?? [])]
                    .filter((j) => !held(j.id))
                    .sort((a, b) => (a.scheduled_at ?? "").localeCompare(b.scheduled_at ?? ""));
                const after = url.searchParams.get("after");
                const start = after ? all.findIndex((j) => j.id === after) + 1 : 0;
                const page = all.slice(start, start + limit);
                return send(200, {
                    jobs: page,
                    page_info: {
                        has_next_page: start + limit < all.length,
                        end_cursor: page.length ? page[page.length - 1].id : null,
                    },
                    cluster_queue: { id: `cq-${queue}`, dispatch_paused: paused.has(queue) },
                });
            }
            // Reserved jobs leave the list until the reservation expires; the same stack key may
            // reserve its own job again (extending it), another may not; a job no longer scheduled
            // cannot be reserved (Buildkite's Stacks API docs).
            const reserve = /^\/v3\/stacks\/([^/]+)\/scheduled-jobs\/batch-reserve$/.exec(url.pathname);
            if (req.method === "PUT" && reserve) {
                const b = JSON.parse(body || "{}");
                const uuids: string[] = b.job_uuids ?? [];
                const seconds = b.reservation_expiry_seconds ?? 900;
                if (uuids.length > 1000 || seconds < 1 || seconds > 3600)
                    return send(422, { message: "at most 1000 job_uuids, reservation_expiry_seconds 1..3600" });
                const key = decodeURIComponent(reserve[1]);
                const out = { reserved: [] as string[], not_reserved: [] as string[] };
                for (const u of uuids) {
                    const other = held(u);
                    const state = states.get(u) ?? jobStateOf(u) ?? "scheduled";
                    if ((other && other.stackKey !== key) || state !== "scheduled") out.not_reserved.push(u);
                    else {
                        reservations.set(u, { stackKey: key, until: Date.now() + seconds * 1000 });
                        out.reserved.push(u);
                    }
                }
                return send(200, out);
            }
            const fin = /^\/v3\/stacks\/([^/]+)\/jobs\/([^/]+)\/finish$/.exec(url.pathname);
            if (req.method === "POST" && fin) {
                if (state.failFinish > 0) {
                    state.failFinish--;
                    return send(503, { message: "Service Unavailable" });
                }
                const b = JSON.parse(body || "{}");
                if (typeof b.detail === "string" && b.detail.length > 4096)
                    return send(422, { message: "detail is too long" });
                finishCalls.set(fin[2], (finishCalls.get(fin[2]) ?? 0) + 1);
                if (!finished.has(fin[2])) finishedAt.set(fin[2], Date.now());
                finished.set(fin[2], b.detail ?? "");
                states.set(fin[2], "finished");
                return send(200, {});
            }
            if (req.method === "POST" && /^\/v3\/stacks\/[^/]+\/notifications$/.test(url.pathname)) {
                const list: StandIn["notifications"] = JSON.parse(body || "{}").notifications ?? [];
                for (const n of list) {
                    if (!n.job_uuid || typeof n.detail !== "string" || !n.timestamp)
                        return send(422, { message: "job_uuid, detail and timestamp are required" });
                    if (n.detail.length > 256)
                        return send(422, { message: "detail is too long (maximum is 256 characters)" });
                }
                notifications.push(...list);
                return send(200, {});
            }
            if (req.method === "POST" && /^\/v3\/stacks\/[^/]+\/jobs\/get-states$/.test(url.pathname)) {
                const uuids: string[] = JSON.parse(body || "{}").job_uuids ?? [];
                if (uuids.length > 100) return send(422, { message: "at most 100 job_uuids" });
                return send(200, {
                    states: Object.fromEntries(uuids.map((u) => [u, states.get(u) ?? jobStateOf(u) ?? "scheduled"])),
                });
            }
            send(404, { message: "Not found" });
        }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    return {
        endpoint: `http://127.0.0.1:${port}/v3`,
        token,
        scheduled,
        jobs,
        paused,
        registered,
        finished,
        finishedAt,
        finishCalls,
        reservations,
        states,
        requests,
        throttled,
        notifications,
        listedAt,
        get pageSize() {
            return state.pageSize;
        },
        set pageSize(n: number) {
            state.pageSize = n;
        },
        get latencyMs() {
            return state.latencyMs;
        },
        set latencyMs(ms: number) {
            state.latencyMs = ms;
        },
        get failFinish() {
            return state.failFinish;
        },
        set failFinish(n: number) {
            state.failFinish = n;
        },
        failNext(status, count = 1) {
            for (let i = 0; i < count; i++) failures.push(status);
        },
        close: () => new Promise<void>((r) => server.close(() => r())),
    };
}

const delay = (ms: number) => new Promise<void>((r) => (ms > 0 ? setTimeout(r, ms) : r()));
