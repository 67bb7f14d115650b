/**
 * Where the scheduler reads what a job's step asks of its pod, and fails a job that cannot run as
 * asked: Buildkite's Stacks API (`GET /stacks/:key/jobs/:uuid`, `POST …/finish`, notifications).
 * Runs in the Lambda; global `fetch` only (clients/stacksApi.ts).
 */
import { agentTokenReader, type EksClusterAccess } from "../clients/kube";
import type { TokenCache } from "../clients/eksToken";
import { stacksApi, type StacksApi } from "../clients/stacksApi";
import type { SchedulerSettings } from "../core/settings";

/** A job's environment and command, as its agent would get them. */
export interface StepInput {
    env: Record<string, string>;
    command: string;
}

/** What the event handler needs to shape a job's pod from the job itself. */
export interface StepSource {
    /** The job's env and command; undefined when Buildkite has no such job (any more). Throws classified errors. */
    read(jobUuid: string): Promise<StepInput | undefined>;
    /** Fails the job in Buildkite with a reason its people read. */
    fail(jobUuid: string, detail: string): Promise<void>;
    /** A message on the job's timeline (best effort). */
    notify(jobUuid: string, detail: string): Promise<void>;
    /** Reserves the job for this stack; false when another stack holds it, or it is no longer scheduled. Throws classified errors. */
    reserve?(jobUuid: string): Promise<boolean>;
    /**
     * Reserves many jobs in as few calls as the API allows (the sweep, for what it listed); `reserve`
     * then answers them without another call for a while. Throws classified errors.
     */
    reserveAll?(jobUuids: string[]): Promise<void>;
}

/**
 * How long a reservation lasts: the sweep extends it each minute while the job's worker waits, so a
 * stack that stops (or a worker that vanished) lets the job go to another stack within this time.
 */
export const RESERVATION_SECONDS = 300;

/** How long a reservation answer is reused: well inside RESERVATION_SECONDS, so a "yes" still holds. */
export const RESERVATION_ANSWER_MS = 30_000;

/** The most jobs one batch-reserve call takes (Buildkite's Stacks API). */
const RESERVE_BATCH = 1000;

/**
 * Reserves jobs for one stack key in batches. Buildkite allows a stack 10 reserve calls a second, so
 * one call per event would throttle a burst: the reservations asked for in one turn of the event
 * loop (the scheduler handles an SQS batch's events together, so all of them) go out as one call,
 * and answers are reused for RESERVATION_ANSWER_MS (the sweep reserves its whole listing first).
 */
export function batchedReservations(
    stacks: Pick<StacksApi, "reserve">,
    stackKey: string,
    now: () => number = Date.now,
): { reserve(jobUuid: string): Promise<boolean>; reserveAll(jobUuids: string[]): Promise<void> } {
    const answers = new Map<string, { reserved: boolean; at: number }>();
    let waiting: { uuid: string; resolve: (reserved: boolean) => void; reject: (e: unknown) => void }[] = [];
    async function ask(uuids: string[]): Promise<Map<string, boolean>> {
        const out = new Map<string, boolean>();
        for (let i = 0; i < uuids.length; i += RESERVE_BATCH) {
            const batch = uuids.slice(i, i + RESERVE_BATCH);
            const r = await stacks.reserve(stackKey, batch, RESERVATION_SECONDS);
            const reserved = new Set(r.reserved.map((u) => u.toLowerCase()));
            const at = now();
            for (const u of batch) {
                out.set(u, reserved.has(u));
                answers.set(u, { reserved: reserved.has(u), at });
            }
        }
        for (const [u, a] of answers) if (now() - a.at >= RESERVATION_ANSWER_MS) answers.delete(u);
        return out;
    }
    function flush() {
        const batch = waiting;
        waiting = [];
        const uuids = [...new Set(batch.map((w) => w.uuid))];
        ask(uuids).then(
            (got) => batch.forEach((w) => w.resolve(got.get(w.uuid) === true)),
            (e: unknown) => batch.forEach((w) => w.reject(e)),
        );
    }
    return {
        reserve(jobUuid) {
            const uuid = jobUuid.toLowerCase();
            const known = answers.get(uuid);
            if (known && now() - known.at < RESERVATION_ANSWER_MS) return Promise.resolve(known.reserved);
            return new Promise<boolean>((resolve, reject) => {
                if (waiting.length === 0) setTimeout(flush, 0);
                waiting.push({ uuid, resolve, reject });
            });
        },
        async reserveAll(jobUuids) {
            await ask([...new Set(jobUuids.map((u) => u.toLowerCase()))]);
        },
    };
}

/** A StepSource over the Stacks API for one stack key. */
export function stacksStepSource(stacks: StacksApi, stackKey: string): StepSource {
    const reservations = batchedReservations(stacks, stackKey);
    return {
        async read(jobUuid) {
            try {
                const job = await stacks.job(stackKey, jobUuid);
                return { env: job.env, command: job.command };
            } catch (e) {
                if ((e as { status?: number }).status === 404) return undefined;
                throw e;
            }
        },
        fail: (jobUuid, detail) => stacks.finish(stackKey, jobUuid, detail),
        notify: (jobUuid, detail) =>
            stacks.notify(stackKey, [{ job_uuid: jobUuid, detail, timestamp: new Date().toISOString() }]),
        reserve: reservations.reserve,
        reserveAll: reservations.reserveAll,
    };
}

/**
 * The scheduler Lambda's StepSource, when a queue takes its pod from the job: the stack's Stacks API,
 * with the agent token read from its Secret in the cluster (cached; the scheduler's Role may read that
 * one Secret) with the Lambda's own EKS tokens. Undefined when no queue reads jobs.
 */
export function clusterStepSource(
    settings: SchedulerSettings,
    cluster: EksClusterAccess,
    tokens: TokenCache,
): StepSource | undefined {
    if (!settings.stacks) return undefined;
    const token = agentTokenReader(cluster, tokens, settings.namespace);
    return stacksStepSource(stacksApi(token, { endpoint: settings.stacks.endpoint }), settings.stacks.stackKey);
}
