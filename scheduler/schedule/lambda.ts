/**
 * The event handler: one event in, at most one worker Job out, one JSON log line saying what and why.
 *
 *   Job Scheduled: parse event -> match queue -> build manifest -> create Job (409 = duplicate event, fine);
 *                  on a queue that takes its pod from the job, the job is read first (stepJob.ts)
 *   Job Finished before it started (cancelled): delete its worker Job, if any, so it frees capacity
 *
 * It returns for everything that must not be retried (a foreign or invalid event, a duplicate) and
 * throws for everything a later attempt may get past, so EventBridge and Lambda retry it and the DLQ
 * keeps it after that.
 */
import type { JobClient } from "../clients/kube";
import { jsonLine, type Logger, logLine } from "../clients/log";
import { describeFailure, isRetryable, oneLine, RETRY_WORDS } from "../core/errors";
import {
    type EventOrigin,
    foreignOrigin,
    JOB_FINISHED,
    JOB_SCHEDULED,
    parseJobEvent,
    type ScheduledJob,
} from "../core/event";
import { buildJobManifest } from "../core/manifest";
import { matchQueue } from "../core/queue";
import { METRICS, msSince, NO_QUEUE, type Outcome, withMetrics } from "../core/metrics";
import { type SchedulerSettings } from "../core/settings";
import { jobName } from "../core/names";
import { jobFromStep } from "./stepJob";
import type { StepSource } from "./stepSource";

/** What happened to one event: also its log line. */
export interface Decision {
    outcome: Outcome;
    reason: string;
    jobUuid?: string;
    queue?: string;
    /** namespace/name of the worker Job. */
    job?: string;
    retryable?: boolean;
    ms: number;
    /** For a created worker: milliseconds from the job becoming runnable to its Job created. */
    delayMs?: number;
}

/** A handler turns one event into a Decision; it throws (after logging) what is worth retrying. */
export type EventHandler = (event: unknown) => Promise<Decision>;

/** What to do with an event, decided before any I/O. */
export type Verdict =
    | { outcome: "ignored"; reason: string; jobUuid?: string }
    | { outcome: "invalid"; reason: string; jobUuid?: string }
    | {
          outcome: "schedule";
          reason: string;
          jobUuid: string;
          queue: string;
          manifest: ReturnType<typeof buildJobManifest>;
          runnableAt?: string;
          job: ScheduledJob;
          tags: string[];
      }
    | { outcome: "cancel"; reason: string; jobUuid: string; queue: string; name: string };

/**
 * The decision for an event before any I/O: ignore it, reject it, make this manifest, or cancel. With
 * `origin` (the Lambda's), an event from another account or source is invalid. Pure.
 */
export function decide(settings: SchedulerSettings, event: unknown, origin?: EventOrigin): Verdict {
    let parsed;
    try {
        parsed = parseJobEvent(event);
    } catch (e) {
        return { outcome: "invalid", reason: (e as Error).message };
    }
    const { job, detailType } = parsed;
    const foreign = origin && foreignOrigin(parsed, origin);
    if (foreign) return { outcome: "invalid", reason: foreign, jobUuid: job.uuid };
    if (detailType === JOB_FINISHED) {
        if (job.startedAt)
            return { outcome: "ignored", reason: "the job ran: its worker finishes by itself", jobUuid: job.uuid };
        const match = matchQueue(job.agentQueryRules, Object.keys(settings.queues));
        if (!match.matched) return { outcome: "ignored", reason: match.reason, jobUuid: job.uuid };
        return {
            outcome: "cancel",
            reason: `the job finished before it started${job.signalReason ? ` (${job.signalReason})` : ""}: its worker is not needed`,
            jobUuid: job.uuid,
            queue: match.queue,
            name: jobName(settings.jobPrefix, job.uuid),
        };
    }
    if (detailType !== JOB_SCHEDULED) {
        return {
            outcome: "ignored",
            reason: `detail-type "${detailType}" is not "${JOB_SCHEDULED}"`,
            jobUuid: job.uuid,
        };
    }
    if (job.type !== "script") {
        return {
            outcome: "ignored",
            reason: `job type "${job.type}" runs no command, so it needs no worker`,
            jobUuid: job.uuid,
        };
    }
    const match = matchQueue(job.agentQueryRules, Object.keys(settings.queues));
    if (!match.matched) return { outcome: "ignored", reason: match.reason, jobUuid: job.uuid };
    return {
        outcome: "schedule",
        reason: `job targets queue ${match.queue}`,
        jobUuid: job.uuid,
        queue: match.queue,
        manifest: buildJobManifest(settings, job, match.queue, match.tags),
        runnableAt: job.runnableAt,
        job,
        tags: match.tags,
    };
}

/**
 * The log line of a decision, with its metrics (Embedded Metric Format): one Events count by queue and
 * outcome, and the schedule delay of a created worker. Pure.
 */
export function decisionLine(namespace: string, decision: Decision, now: number): string {
    const record = { msg: "scaledkite.schedule", ...decision };
    return jsonLine(
        withMetrics(
            record,
            { Namespace: namespace, Queue: decision.queue ?? NO_QUEUE, Outcome: decision.outcome },
            [
                { name: METRICS.events, unit: "Count", value: 1 },
                ...(decision.delayMs === undefined
                    ? []
                    : [{ name: METRICS.scheduleDelay, unit: "Milliseconds" as const, value: decision.delayMs }]),
            ],
            now,
        ),
    );
}

/** How a handler is made beyond its settings, Jobs and log. */
export interface HandlerOptions {
    /** The sweep's handler marks its lines so, and they carry no metrics: the sweep counts what it did itself. */
    via?: "sweep";
    /** The Lambda's: an event from another account or bus is invalid (the sweep and the CLI make their own events). */
    origin?: EventOrigin;
    /** Where jobs are read from and failed, for queues that take their pod from the job (the Stacks API). */
    steps?: StepSource;
}

/** Makes the handler for a stack's settings and a client for its worker Jobs. */
export function createEventHandler(
    settings: SchedulerSettings,
    jobs: JobClient,
    log: Logger = logLine,
    { via, origin, steps }: HandlerOptions = {},
): EventHandler {
    return async (event: unknown): Promise<Decision> => {
        const started = performance.now();
        const d = decide(settings, event, origin);
        const elapsed = () => Math.round((performance.now() - started) * 10) / 10;
        const emit = (decision: Decision) => {
            log(
                via
                    ? jsonLine({ via, msg: "scaledkite.schedule", ...decision })
                    : decisionLine(settings.namespace, decision, Date.now()),
            );
            return decision;
        };
        if (d.outcome === "ignored" || d.outcome === "invalid")
            return emit({ outcome: d.outcome, reason: d.reason, jobUuid: d.jobUuid, ms: elapsed() });

        const job = `${settings.namespace}/${jobName(settings.jobPrefix, d.jobUuid)}`;
        try {
            if (d.outcome === "cancel") {
                const removed = await jobs.deleteJob(settings.namespace, d.name);
                return emit({
                    outcome: removed === "deleted" ? "cancelled" : "ignored",
                    reason:
                        removed === "deleted" ? d.reason : "the job finished before it started, and it had no worker",
                    jobUuid: d.jobUuid,
                    queue: d.queue,
                    job,
                    ms: elapsed(),
                });
            }
            // With a stack key, the job is reserved for this stack first (in parallel with reading
            // it): a job another stack holds gets no worker here, so two stacks on one queue never
            // both start one (the second would only exit 27).
            const reservation = steps?.reserve ? steps.reserve(d.jobUuid) : Promise.resolve(true);
            // Nothing is said to Buildkite about a job (refused, ignored fields) unless it is ours.
            const ours: StepSource | undefined = steps && {
                ...steps,
                fail: async (uuid, detail) => ((await reservation) ? steps.fail(uuid, detail) : undefined),
                notify: async (uuid, detail) => ((await reservation) ? steps.notify(uuid, detail) : undefined),
            };
            const [reserved, shaped] = await Promise.all([reservation, jobFromStep(settings, d, jobs, ours)]);
            if (!reserved)
                return emit({
                    outcome: "ignored",
                    reason: "another stack reserved this job, or it is no longer scheduled: no worker here",
                    jobUuid: d.jobUuid,
                    queue: d.queue,
                    job,
                    ms: elapsed(),
                });
            if ("gone" in shaped || "refused" in shaped) {
                const refused = "refused" in shaped;
                return emit({
                    outcome: refused ? "refused" : "ignored",
                    reason: refused ? shaped.refused : shaped.gone,
                    jobUuid: d.jobUuid,
                    queue: d.queue,
                    job,
                    ms: elapsed(),
                });
            }
            const result = await shaped.create();
            const delayMs = result === "created" ? msSince(d.runnableAt, Date.now()) : undefined;
            if (result === "refused")
                return emit({
                    outcome: "refused",
                    reason: shaped.refusedBy!,
                    jobUuid: d.jobUuid,
                    queue: d.queue,
                    job,
                    ms: elapsed(),
                });
            return emit({
                outcome: result,
                reason:
                    result === "created"
                        ? `${d.reason}${shaped.note ? ` (${shaped.note})` : ""}`
                        : "a worker Job for this job already exists (duplicate or replayed event)",
                jobUuid: d.jobUuid,
                queue: d.queue,
                job,
                ms: elapsed(),
                ...(delayMs === undefined ? {} : { delayMs }),
            });
        } catch (e) {
            const retryable = isRetryable(e);
            emit({
                outcome: "failed",
                reason: describeFailure(e, RETRY_WORDS.lambda),
                jobUuid: d.jobUuid,
                queue: d.queue,
                job,
                retryable,
                ms: elapsed(),
            });
            // Thrown either way: a retryable failure is retried; a permanent one still lands in the DLQ
            // with its reason, so no job is lost silently.
            throw e instanceof Error ? oneLine(e, RETRY_WORDS.lambda) : e;
        }
    };
}
