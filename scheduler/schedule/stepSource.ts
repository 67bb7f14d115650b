/**
 * Where the scheduler reads what a job's step asks of its pod, and fails a job that cannot run as
 * asked: Buildkite's Stacks API (`GET /stacks/:key/jobs/:uuid`, `POST …/finish`, notifications).
 * Runs in the Lambda; global `fetch` only (clients/stacksApi.ts).
 */
import { bearerSecretReader, type EksClusterAccess } from "../clients/kube";
import type { TokenCache } from "../clients/eksToken";
import { stacksApi, type StacksApi } from "../clients/stacksApi";
import { AGENT_TOKEN_KEY, SECRET_NAMES } from "../core/names";
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
}

/**
 * How long a reservation lasts: the sweep extends it each minute while the job's worker waits, so a
 * stack that stops (or a worker that vanished) lets the job go to another stack within this time.
 */
export const RESERVATION_SECONDS = 300;

/** A StepSource over the Stacks API for one stack key. */
export function stacksStepSource(stacks: StacksApi, stackKey: string): StepSource {
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
        async reserve(jobUuid) {
            const r = await stacks.reserve(stackKey, [jobUuid], RESERVATION_SECONDS);
            return r.reserved.map((u) => u.toLowerCase()).includes(jobUuid.toLowerCase());
        },
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
    const token = bearerSecretReader(
        cluster.endpoint,
        cluster.caData,
        tokens,
        settings.namespace,
        SECRET_NAMES.agentToken,
        AGENT_TOKEN_KEY,
    );
    return stacksStepSource(stacksApi(token, { endpoint: settings.stacks.endpoint }), settings.stacks.stackKey);
}
