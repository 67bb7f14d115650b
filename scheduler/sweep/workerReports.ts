/**
 * What the sweep tells about its workers: each queue's running and pending workers and their start
 * latency (metrics), why jobs still wait (timeline notices), and the reservations it keeps for jobs
 * whose workers wait. Everything here is best effort: a failure is logged, never a sweep error.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { jsonLine, type Logger } from "../clients/log";
import type { StacksApi } from "../clients/stacksApi";
import { type Metric, METRICS, withMetrics } from "../core/metrics";
import { type DeferredJob, waitNotices } from "../core/notices";
import type { SchedulerSettings } from "../core/settings";
import type { WorkerIdentity } from "../core/workerIdentity";
import { workerStats } from "../core/workerStats";
import { RESERVATION_SECONDS } from "../schedule/stepSource";
import type { WorkerSweep } from "./workers";

/** A worker that may still start, and why it waits. */
export interface Waiting extends WorkerIdentity {
    pod: V1Pod;
    reason: string;
}

/** The sweep's reports for a stack. */
export function createWorkerReports(
    settings: SchedulerSettings,
    stacks: StacksApi,
    stackKey: string,
    log: Logger,
    intervalMs: number,
) {
    const { namespace } = settings;
    const metric = (name: string, value: number | number[], unit: Metric["unit"] = "Count"): Metric => ({
        name,
        unit,
        value,
    });

    /**
     * Keeps the jobs of workers not yet running reserved for this stack (best effort: a reservation
     * lasts RESERVATION_SECONDS, several sweeps). A job given up on is finished, which frees it.
     */
    async function extendReservations(waiting: Waiting[]) {
        const uuids = [...new Set(waiting.filter((w) => w.pod.status?.phase === "Pending").map((w) => w.uuid))];
        if (!uuids.length) return;
        try {
            const { notReserved } = await stacks.reserve(stackKey, uuids, RESERVATION_SECONDS);
            if (notReserved.length) log(jsonLine({ msg: "scaledkite.sweep", outcome: "reservations", notReserved }));
        } catch (e) {
            log(
                jsonLine({
                    msg: "scaledkite.sweep",
                    warning: `could not extend ${uuids.length} reservation(s): ${(e as Error).message}`,
                }),
            );
        }
    }

    /** A message on a job's timeline (best effort: a failure is logged). */
    async function tell(uuid: string, detail: string) {
        try {
            await stacks.notify(stackKey, [{ job_uuid: uuid, detail, timestamp: new Date().toISOString() }]);
            log(jsonLine({ msg: "scaledkite.sweep", outcome: "notified", jobUuid: uuid, detail }));
        } catch (e) {
            log(
                jsonLine({
                    msg: "scaledkite.sweep",
                    warning: `could not post a notice to Buildkite: ${(e as Error).message}`,
                }),
            );
        }
    }

    /** Tells Buildkite why jobs still wait, in the words the check found (best effort: a failure is logged). */
    async function notifyWaiting(result: WorkerSweep, waiting: Waiting[], deferred: DeferredJob[], now: Date) {
        const pending = waiting.filter((w) => w.pod.status?.phase === "Pending");
        const reasons = new Map(pending.map((w) => [w.pod, w.reason]));
        const notices = waitNotices(
            pending.map((w) => w.pod),
            deferred,
            now,
            intervalMs,
            (pod) => reasons.get(pod),
        );
        if (!notices.length) return;
        try {
            await stacks.notify(stackKey, notices);
            result.notified = notices.length;
            for (const n of notices)
                log(jsonLine({ msg: "scaledkite.sweep", outcome: "notified", jobUuid: n.job_uuid, detail: n.detail }));
        } catch (e) {
            log(
                jsonLine({
                    msg: "scaledkite.sweep",
                    warning: `could not post ${notices.length} wait notice(s) to Buildkite: ${(e as Error).message}`,
                }),
            );
        }
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
                        { Namespace: namespace, Queue: queue },
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

    return { extendReservations, tell, notifyWaiting, logWorkerMetrics };
}
