/**
 * The sweep's second half: the workers themselves. It lists the worker pods once, logs each queue's
 * running and pending workers with their start latency, fails in Buildkite (and deletes) the workers
 * that will never run (stuck.ts: unschedulable too long, a container that keeps failing to start, an
 * agent that could not acquire its job as many times as the Job allows), tells Buildkite why jobs still
 * wait, and deletes waiting workers of jobs that are already done. A worker is only deleted once
 * Buildkite knows why its job failed, so a failed `finish` keeps it for the next sweep.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { jsonLine, type Logger } from "../clients/log";
import type { JobClient } from "../clients/kube";
import type { StacksApi } from "../clients/stacksApi";
import { type Metric, METRICS, withMetrics } from "../core/metrics";
import { LABELS, QUEUE_ANNOTATION } from "../core/names";
import { type DeferredJob, waitNotices } from "../core/notices";
import { queueSettings, type SchedulerSettings } from "../core/settings";
import { type FirstFailures, firstFailures, notRunReason, stuckReason, type StuckOptions } from "../core/stuck";
import { workerStats } from "../core/workerStats";

/** What one sweep did about workers that will never run or are no longer needed. */
export interface WorkerSweep {
    failed: { jobUuid: string; reason: string }[];
    cancelled: string[];
    /** Per queue: workers given up on and workers of done jobs deleted (for the metrics). */
    byQueue?: Record<string, { failedStuck: number; deletedCancelled: number }>;
    /** Timeline messages sent to Buildkite about jobs still waiting for their worker. */
    notified?: number;
    /** Workers that will never run but were kept because failing their job in Buildkite did not succeed (the next sweep tries again). */
    kept: { jobUuid: string; error: string }[];
}

/** Buildkite job states in which a waiting worker is no longer needed. */
const DONE_STATES = ["canceled", "canceling", "finished", "expired", "timed_out", "skipped", "broken"];

/**
 * Makes the workers' half of a sweep for a stack: each call returns what it did; it throws only when
 * the workers cannot be listed (or a job's state cannot be read), having done what it could.
 */
export function createWorkerSweep(
    settings: SchedulerSettings,
    stacks: StacksApi,
    jobs: JobClient,
    stackKey: string,
    log: Logger,
    stuck: StuckOptions & { intervalMs: number },
): (deferred: DeferredJob[]) => Promise<WorkerSweep> {
    const intervalMs = stuck.intervalMs;
    const metric = (name: string, value: number | number[], unit: Metric["unit"] = "Count"): Metric => ({
        name,
        unit,
        value,
    });
    /** Fails the Buildkite jobs of workers that will never run and deletes those workers; deletes waiting workers of jobs that are done. */
    async function sweepWorkers(deferred: DeferredJob[]): Promise<WorkerSweep> {
        const result: WorkerSweep = { failed: [], cancelled: [], kept: [], byQueue: {} };
        if (!jobs.listWorkerPods) return result;
        const now = new Date();
        const all = await jobs.listWorkerPods(settings.namespace);
        const queueOf = new Map(all.map((p) => [workerOf(p).uuid, p.metadata?.annotations?.[QUEUE_ANNOTATION]]));
        const count = (uuid: string, what: "failedStuck" | "deletedCancelled") => {
            const queue = queueOf.get(uuid);
            if (!queueSettings(settings, queue)) return;
            const q = (result.byQueue![queue!] ??= { failedStuck: 0, deletedCancelled: 0 });
            q[what]++;
        };
        logWorkerMetrics(all, now);
        const failures = await podFailures(all);
        const pending = all.filter((p) => p.status?.phase === "Pending" && !p.metadata?.deletionTimestamp);
        const waiting: { uuid: string; jobName: string }[] = [];
        const giveUp = async (uuid: string, jobName: string, reason: string) => {
            try {
                await stacks.finish(stackKey, uuid, `Scaledkite: ${reason}`);
            } catch (e) {
                // The worker stays until Buildkite knows why the job failed: deleting it first would
                // only make the next sweep create another. A job that is already done is found below.
                const error = (e as Error).message;
                result.kept.push({ jobUuid: uuid, error });
                waiting.push({ uuid, jobName });
                log(
                    jsonLine({
                        msg: "scaledkite.sweep",
                        outcome: "kept",
                        jobUuid: uuid,
                        job: `${settings.namespace}/${jobName}`,
                        reason,
                        warning: `could not fail the job in Buildkite, so its worker stays: ${error}`,
                    }),
                );
                return;
            }
            await jobs.deleteJob(settings.namespace, jobName);
            result.failed.push({ jobUuid: uuid, reason });
            count(uuid, "failedStuck");
            log(
                jsonLine({
                    msg: "scaledkite.sweep",
                    outcome: "unrunnable",
                    jobUuid: uuid,
                    job: `${settings.namespace}/${jobName}`,
                    reason,
                }),
            );
        };
        for (const pod of pending) {
            const { uuid, jobName } = workerOf(pod);
            if (!uuid || !jobName) continue;
            const reason = stuckReason(pod, now, stuck, failures);
            if (!reason) {
                waiting.push({ uuid, jobName });
                continue;
            }
            await giveUp(uuid, jobName, reason);
        }
        // Workers whose agents could not acquire their job, as many times as the Job allows.
        const byJob = new Map<string, V1Pod[]>();
        for (const pod of all) {
            const { jobName } = workerOf(pod);
            if (jobName) byJob.set(jobName, [...(byJob.get(jobName) ?? []), pod]);
        }
        for (const [jobName, pods] of byJob) {
            const uuid = workerOf(pods[0]).uuid;
            const queue = queueSettings(settings, pods[0].metadata?.annotations?.[QUEUE_ANNOTATION]);
            const reason = uuid && queue ? notRunReason(pods, queue.backoffLimit) : undefined;
            if (uuid && reason) await giveUp(uuid, jobName, reason);
        }
        // Tell Buildkite why jobs still wait (best effort: a failure is logged, not a sweep error).
        const given = new Set(result.failed.map((f) => f.jobUuid));
        const notices = waitNotices(
            pending.filter((p) => !given.has(workerOf(p).uuid ?? "")),
            deferred,
            now,
            intervalMs,
        );
        if (notices.length) {
            try {
                await stacks.notify(stackKey, notices);
                result.notified = notices.length;
                for (const n of notices)
                    log(
                        jsonLine({
                            msg: "scaledkite.sweep",
                            outcome: "notified",
                            jobUuid: n.job_uuid,
                            detail: n.detail,
                        }),
                    );
            } catch (e) {
                log(
                    jsonLine({
                        msg: "scaledkite.sweep",
                        warning: `could not post ${notices.length} wait notice(s) to Buildkite: ${(e as Error).message}`,
                    }),
                );
            }
        }
        if (waiting.length) {
            const states = await stacks.jobStates(
                stackKey,
                waiting.map((w) => w.uuid),
            );
            for (const { uuid, jobName } of waiting) {
                if (!DONE_STATES.includes(states[uuid] ?? "")) continue;
                await jobs.deleteJob(settings.namespace, jobName);
                result.cancelled.push(uuid);
                count(uuid, "deletedCancelled");
                log(
                    jsonLine({
                        msg: "scaledkite.sweep",
                        outcome: "cancelled",
                        jobUuid: uuid,
                        job: `${settings.namespace}/${jobName}`,
                        reason: `the Buildkite job is ${states[uuid]}: its waiting worker is not needed`,
                    }),
                );
            }
        }
        return result;
    }

    /** One line per served queue: running and pending workers, and the start latency of those that started in the last interval. */
    function logWorkerMetrics(pods: V1Pod[], now: Date): void {
        const stats = workerStats(pods, now, intervalMs);
        for (const queue of Object.keys(settings.queues)) {
            const q = stats.get(queue) ?? { running: 0, pending: 0, startLatencyMs: [] };
            log(
                jsonLine(
                    withMetrics(
                        {
                            msg: "scaledkite.workers",
                            queue,
                            running: q.running,
                            pending: q.pending,
                            started: q.startLatencyMs.length,
                        },
                        { Namespace: settings.namespace, Queue: queue },
                        [
                            metric(METRICS.runningWorkers, q.running),
                            metric(METRICS.pendingWorkers, q.pending),
                            metric(METRICS.startLatency, q.startLatencyMs, "Milliseconds"),
                        ],
                        now.getTime(),
                    ),
                ),
            );
        }
    }

    /** When the workers' containers first failed to start; without the events, stuck.ts counts from scheduling. */
    async function podFailures(pods: V1Pod[]): Promise<FirstFailures> {
        if (!jobs.listPodFailures || !pods.some((p) => p.status?.phase === "Pending")) return new Map();
        try {
            return firstFailures(await jobs.listPodFailures(settings.namespace));
        } catch (e) {
            log(
                jsonLine({
                    msg: "scaledkite.sweep",
                    warning: `could not read the worker pods' events, so start failures count from scheduling: ${(e as Error).message}`,
                }),
            );
            return new Map();
        }
    }

    function workerOf(pod: V1Pod): { uuid?: string; jobName?: string } {
        return {
            uuid: pod.metadata?.labels?.[LABELS.jobUuid],
            jobName: pod.metadata?.labels?.["job-name"] ?? pod.metadata?.labels?.["batch.kubernetes.io/job-name"],
        };
    }

    return sweepWorkers;
}
