/**
 * What the sweep reports about the workers it sees, per queue: how many run and wait, and how long the
 * ones that started since the last sweep took from their job becoming runnable to their agent running.
 * Pure: from the listed pods and the time.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { AGENT_CONTAINER, QUEUE_ANNOTATION, RUNNABLE_AT_ANNOTATION } from "./names";

export interface QueueWorkers {
    running: number;
    pending: number;
    /** Start latencies (ms) of the workers whose agent container started in the window. */
    startLatencyMs: number[];
}

/** When the pod's agent container started running (it may have finished since). */
export function agentStartedAt(pod: V1Pod): Date | undefined {
    const state = pod.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER)?.state;
    const at = state?.running?.startedAt ?? state?.terminated?.startedAt;
    return at === undefined ? undefined : new Date(at);
}

/**
 * Per queue (the pods' `scaledkite.io/queue` annotation): running and pending workers, and the start
 * latency of each worker whose agent started within `windowMs` before `now` (the sweep interval, so
 * each start is counted once). Pods being deleted are not counted. Pure.
 */
export function workerStats(pods: V1Pod[], now: Date, windowMs: number): Map<string, QueueWorkers> {
    const out = new Map<string, QueueWorkers>();
    for (const pod of pods) {
        const queue = pod.metadata?.annotations?.[QUEUE_ANNOTATION];
        if (!queue || pod.metadata?.deletionTimestamp) continue;
        const q = out.get(queue) ?? { running: 0, pending: 0, startLatencyMs: [] };
        out.set(queue, q);
        if (pod.status?.phase === "Running") q.running++;
        if (pod.status?.phase === "Pending") q.pending++;
        const started = agentStartedAt(pod);
        const runnable = Date.parse(pod.metadata?.annotations?.[RUNNABLE_AT_ANNOTATION] ?? "");
        if (
            started &&
            !Number.isNaN(runnable) &&
            started.getTime() <= now.getTime() &&
            now.getTime() - started.getTime() < windowMs
        ) {
            q.startLatencyMs.push(Math.max(0, started.getTime() - runnable));
        }
    }
    return out;
}
