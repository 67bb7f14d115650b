/**
 * The sweep: events can be lost, so every few minutes (or on demand) the scheduled jobs of each
 * served queue are listed from Buildkite's Stacks API and pushed through the same idempotent path as
 * the events. A job that already has a worker is left alone (the create answers 409); a lost event
 * costs at most one sweep interval. A queue whose dispatch is paused is left alone.
 *
 * It also finds workers that will never run (stuck.ts): their Buildkite job is failed with the reason
 * through the Stacks API and their Job deleted; and workers still waiting for a job that is already
 * done (cancelled before it started): their Job is deleted.
 */
import { describeFailure, isQuotaFull, oneLine, RETRY_WORDS } from "../core/errors";
import { JOB_SCHEDULED } from "../core/event";
import { createEventHandler, type Decision } from "../schedule/lambda";
import { stacksStepSource } from "../schedule/stepSource";
import { jsonLine, type Logger, logLine } from "../clients/log";
import type { JobClient } from "../clients/kube";
import type { StuckOptions } from "../core/stuck";
import { type SchedulerSettings } from "../core/settings";
import { type Metric, METRICS, withMetrics } from "../core/metrics";
import type { DeferredJob } from "../core/notices";
import type { StacksApi, StacksJob } from "../clients/stacksApi";
import { createWorkerSweep, type WorkerSweep } from "./workers";
import { type WatchOptions, type WatchReport, watchWorkers } from "./watch";

/** What one sweep did for one queue. */
export interface QueueSweep {
    queue: string;
    listed: number;
    created: number;
    exists: number;
    paused: boolean;
    /** Jobs left for a later sweep because the namespace's spend cap (ResourceQuota) is full: not an error. */
    deferred: number;
    failed: number;
    error?: string;
}

/** The Stacks API's view of a scheduled job, as the Job Scheduled event the handler takes. Pure. */
export function eventFromStacksJob(job: StacksJob): object {
    return {
        "detail-type": JOB_SCHEDULED,
        id: `sweep-${job.id}`,
        detail: {
            job: {
                uuid: job.id,
                type: "script",
                agent_query_rules: job.agent_query_rules ?? [],
                label: job.step?.label,
                step_key: job.step?.key,
                runnable_at: job.scheduled_at,
                priority: job.priority,
            },
            build: {
                uuid: job.build?.uuid,
                number: job.build?.number,
                branch: job.build?.branch,
                commit: job.build?.commit,
            },
            pipeline: { uuid: job.pipeline?.uuid, slug: job.pipeline?.slug },
        },
    };
}

/**
 * Lists each queue lightly at the given offsets (ms after `startedAt`), so Buildkite keeps showing
 * the queues Connected between sweeps (it marks a queue Disconnected about 30 s after a stack last
 * listed it). Best effort: a failed listing is logged; the next one or the next sweep tries again.
 */
export async function keepQueuesConnected(
    stacks: StacksApi,
    stackKey: string,
    queues: string[],
    offsets: number[],
    startedAt: number,
    sleep: (ms: number) => Promise<void>,
    log: Logger = logLine,
    now: () => number = Date.now,
): Promise<number> {
    let listings = 0;
    for (const offset of offsets) {
        const wait = startedAt + offset - now();
        if (wait > 0) await sleep(wait);
        await Promise.all(
            queues.map((q) =>
                stacks.heartbeat(stackKey, q).then(
                    () => {
                        listings++;
                    },
                    (e) => {
                        log(
                            jsonLine({
                                msg: "scaledkite.sweep",
                                queue: q,
                                warning: `could not list the queue to keep it Connected: ${(e as Error).message}`,
                            }),
                        );
                    },
                ),
            ),
        );
    }
    return listings;
}

/** Runs `work` over `items`, at most `limit` at once. */
async function inParallel<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    await Promise.all(
        Array.from({ length: Math.min(limit, items.length) }, async () => {
            while (next < items.length) await work(items[next++]);
        }),
    );
}

/**
 * Makes a sweep for a stack. Each call registers the stack for every served queue (idempotent),
 * lists the queue's scheduled jobs and creates the missing workers; it throws after the last queue if
 * anything failed (so the sweep's error alarm fires), having done all it could.
 */
export function createSweeper(
    settings: SchedulerSettings,
    stacks: StacksApi,
    jobs: JobClient,
    stackKey: string,
    log: Logger = logLine,
    stuck: StuckOptions & { intervalMs?: number } = { pendingTimeoutMs: 15 * 60_000, startFailureGraceMs: 30_000 },
) {
    /** Each worker start is measured by the one sweep whose interval it falls in. */
    const intervalMs = stuck.intervalMs ?? 60_000;
    const metric = (name: string, value: number | number[], unit: Metric["unit"] = "Count"): Metric => ({
        name,
        unit,
        value,
    });
    // The sweep makes workers as the scheduler does: from the job itself where the queue says so.
    const steps = stacksStepSource(stacks, stackKey);
    const handle = createEventHandler(settings, jobs, log, { via: "sweep", steps });

    const workerChecks = createWorkerSweep(settings, stacks, jobs, stackKey, log, { ...stuck, intervalMs });

    const sweep = async (): Promise<{ queues: QueueSweep[]; workers: WorkerSweep }> => {
        const report: QueueSweep[] = [];
        const deferred: DeferredJob[] = [];
        for (const queue of Object.keys(settings.queues)) {
            const r: QueueSweep = { queue, listed: 0, created: 0, exists: 0, paused: false, deferred: 0, failed: 0 };
            report.push(r);
            try {
                await stacks.register(stackKey, queue, { scheduler: "scaledkite" });
                const { jobs: scheduled, paused } = await stacks.scheduledJobs(stackKey, queue);
                r.listed = scheduled.length;
                r.paused = paused;
                if (!paused && scheduled.length > 0) {
                    // One reservation call for the whole listing (Buildkite allows 10 a second per
                    // stack); each job's handler then reads its answer. If it fails, each asks again.
                    await steps.reserveAll?.(scheduled.map((j) => j.id)).catch(() => undefined);
                    await inParallel(scheduled, 10, async (job) => {
                        try {
                            const d: Decision = await handle(eventFromStacksJob(job));
                            if (d.outcome === "created") r.created++;
                            else if (d.outcome === "exists") r.exists++;
                        } catch (e) {
                            // A full spend cap is the cap working: the job waits for a later sweep (or its event's retry).
                            if (isQuotaFull(e)) {
                                r.deferred++;
                                deferred.push({ uuid: job.id, scheduledAt: job.scheduled_at });
                            } else r.failed++;
                        }
                    });
                }
            } catch (e) {
                r.failed++;
                r.error = describeFailure(e, RETRY_WORDS.sweep);
            }
            log(
                jsonLine(
                    withMetrics(
                        { msg: "scaledkite.sweep", ...r },
                        { Namespace: settings.namespace, Queue: queue },
                        [
                            metric(METRICS.sweepCreated, r.created),
                            metric(METRICS.sweepDeferred, r.deferred),
                            metric(METRICS.sweepFailed, r.failed),
                        ],
                        Date.now(),
                    ),
                ),
            );
        }
        let workers: WorkerSweep = { failed: [], cancelled: [], kept: [] };
        let workerError: string | undefined;
        try {
            workers = await workerChecks.sweep(deferred);
        } catch (e) {
            workerError = describeFailure(e, RETRY_WORDS.sweep);
        }
        // What the sweep did to workers, per queue (zero included, so the dashboard's lines are continuous).
        for (const queue of Object.keys(settings.queues)) {
            const { failedStuck, deletedCancelled } = workers.byQueue?.[queue] ?? {
                failedStuck: 0,
                deletedCancelled: 0,
            };
            log(
                jsonLine(
                    withMetrics(
                        { msg: "scaledkite.sweep.workers", queue, failedStuck, deletedCancelled },
                        { Namespace: settings.namespace, Queue: queue },
                        [metric(METRICS.failedStuck, failedStuck), metric(METRICS.deletedCancelled, deletedCancelled)],
                        Date.now(),
                    ),
                ),
            );
        }
        const failures = report
            .filter((r) => r.failed > 0)
            .map((f) => `queue ${f.queue}: ${f.error ?? `${f.failed} job(s) failed`}`);
        if (workerError) failures.push(`workers: ${workerError}`);
        for (const k of workers.kept)
            failures.push(`job ${k.jobUuid}: could not fail it in Buildkite (its worker stays): ${k.error}`);
        if (failures.length) {
            // The next sweep tries again; the error makes the failure visible (log line, error alarm).
            throw oneLine(new Error(`sweep: ${failures.join("; ")}`));
        }
        return { queues: report, workers };
    };
    /** Holds a watch on the workers until `until` (epoch ms), failing within seconds what will never run (watch.ts). */
    const watch = (until: number, opts?: WatchOptions): Promise<WatchReport | undefined> =>
        jobs.workers
            ? watchWorkers(
                  jobs.workers,
                  settings.namespace,
                  (pods, held) => workerChecks.check(pods, held),
                  until,
                  log,
                  opts,
              )
            : Promise.resolve(undefined);
    return Object.assign(sweep, { watch });
}
