/**
 * Which worker pods will never run, and why, in words a person understands. Pure.
 *
 * A pod that cannot pull its image or build its container config fails to start for good after a
 * short grace period; a pod still Pending past the pending timeout (no node fits, no capacity) is
 * given up on. A job whose workers all exited without running it (notRunReason) is given up on once
 * the Job controller has. Either way the sweep fails the Buildkite job with the reason and deletes
 * the Job.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { AGENT_EXIT_NOT_RUN } from "./agentLauncher";
import { AGENT_CONTAINER } from "./manifest";

export interface StuckOptions {
    /** How long a pod may stay Pending (unschedulable, no capacity). */
    pendingTimeoutMs: number;
    /** How long a pod may fail to start (image pull, container config) before it is given up on. */
    startFailureGraceMs: number;
}

const START_FAILURES = ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"];

function ageMs(pod: V1Pod, now: Date): number {
    const created = pod.metadata?.creationTimestamp;
    return created ? now.getTime() - new Date(created).getTime() : 0;
}

/** The reason `pod` will never run, or undefined while it may still. */
export function stuckReason(pod: V1Pod, now: Date, opts: StuckOptions): string | undefined {
    if (pod.status?.phase !== "Pending" || pod.metadata?.deletionTimestamp) return undefined;
    const age = ageMs(pod, now);
    const statuses = [...(pod.status.initContainerStatuses ?? []), ...(pod.status.containerStatuses ?? [])];
    const failing = statuses.find((c) => START_FAILURES.includes(c.state?.waiting?.reason ?? ""));
    if (failing && age >= opts.startFailureGraceMs) {
        const w = failing.state!.waiting!;
        return `the worker could not start: ${w.reason} for container ${failing.name} (image "${failing.image}")${w.message ? `: ${w.message}` : ""}`;
    }
    if (age >= opts.pendingTimeoutMs) {
        const scheduled = pod.status.conditions?.find((c) => c.type === "PodScheduled");
        const minutes = Math.round(age / 60_000);
        if (scheduled?.status === "False") {
            return `the worker pod could not be scheduled for ${minutes} min: ${scheduled.message ?? scheduled.reason ?? "no node fits"}`;
        }
        return `the worker pod was still Pending after ${minutes} min`;
    }
    return undefined;
}

/**
 * Why a job's workers will not run it any more, when each of them exited with AGENT_EXIT_NOT_RUN
 * (the agent could not acquire the job: locked for too long, the API unreachable) and the Job
 * controller has used up its retries (`backoffLimit` + 1 pods); undefined otherwise. `pods` are one
 * Job's pods. Pure.
 */
export function notRunReason(pods: V1Pod[], backoffLimit: number): string | undefined {
    const live = pods.filter((p) => !p.metadata?.deletionTimestamp);
    if (live.some((p) => p.status?.phase === "Pending" || p.status?.phase === "Running")) return undefined;
    const notRun = live.filter((p) => p.status?.phase === "Failed" &&
        (p.status.containerStatuses ?? []).some((c) => c.name === AGENT_CONTAINER && c.state?.terminated?.exitCode === AGENT_EXIT_NOT_RUN));
    if (notRun.length === 0 || notRun.length < backoffLimit + 1) return undefined;
    const last = notRun[notRun.length - 1].metadata?.name ?? "?";
    return `the worker's agent exited ${notRun.length} time(s) without running the job (it could not acquire it; the agent container's log of pod ${last} says why)`;
}
