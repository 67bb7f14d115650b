/**
 * Which worker pods will never run, and why, in words a person understands. Pure.
 *
 * - A pod the scheduler has not placed (PodScheduled False) is given up on after the pending timeout,
 *   counted from its creation (no node fits, no capacity).
 * - A placed pod whose container cannot start (image pull, container config) is given up on once
 *   that failure has lasted the start-failure grace, counted from when the kubelet first reported it
 *   (its earliest `Failed` event for that container), or, without such an event, from when the pod
 *   was placed. A pull that fails once and then succeeds (a registry's rate limit) never counts.
 * - A placed pod that is still starting (pulling a large image, dockerd coming up) is not stuck: its
 *   Job's activeDeadlineSeconds bounds it.
 * A job whose workers all exited without running it (notRunReason) is given up on once the Job
 * controller has. Either way the sweep fails the Buildkite job with the reason and then deletes the Job.
 */
import type { CoreV1Event, V1Pod } from "@kubernetes/client-node";
import { AGENT_EXIT_NOT_RUN } from "./agentLauncher";
import { AGENT_CONTAINER } from "./names";

export interface StuckOptions {
    /** How long a pod may stay unscheduled (no node fits, no capacity). */
    pendingTimeoutMs: number;
    /** How long a container may fail to start (image pull, container config) before it is given up on. */
    startFailureGraceMs: number;
}

/** Waiting reasons that say a container is failing to start (as opposed to still starting). */
export const START_FAILURES = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/** When each pod's containers first failed to start, from the kubelet's Warning events: `<pod>/<container>` -> time. */
export type FirstFailures = ReadonlyMap<string, Date>;

/**
 * The earliest kubelet `Failed` event per pod and container (the container is in the event's
 * fieldPath, `spec.containers{name}` or `spec.initContainers{name}`). Pure.
 */
export function firstFailures(events: CoreV1Event[]): FirstFailures {
    const out = new Map<string, Date>();
    for (const e of events) {
        if (e.reason !== "Failed" || e.involvedObject?.kind !== "Pod") continue;
        const container = /\{([^}]+)\}$/.exec(e.involvedObject.fieldPath ?? "")?.[1];
        const at = e.firstTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp;
        if (!container || !e.involvedObject.name || !at) continue;
        const key = `${e.involvedObject.name}/${container}`;
        const when = new Date(at);
        const seen = out.get(key);
        if (!seen || when < seen) out.set(key, when);
    }
    return out;
}

const minutes = (ms: number) => Math.round(ms / 60_000);

/** The reason `pod` will never run, or undefined while it may still. */
export function stuckReason(
    pod: V1Pod,
    now: Date,
    opts: StuckOptions,
    failures: FirstFailures = new Map(),
): string | undefined {
    if (pod.status?.phase !== "Pending" || pod.metadata?.deletionTimestamp) return undefined;
    const created = pod.metadata?.creationTimestamp ? new Date(pod.metadata.creationTimestamp) : now;
    const scheduled = pod.status.conditions?.find((c) => c.type === "PodScheduled");
    if (scheduled?.status !== "True") {
        const age = now.getTime() - created.getTime();
        if (age < opts.pendingTimeoutMs) return undefined;
        if (scheduled?.status === "False") {
            return `the worker pod could not be scheduled for ${minutes(age)} min: ${scheduled.message ?? scheduled.reason ?? "no node fits"}`;
        }
        return `the worker pod was not scheduled after ${minutes(age)} min`;
    }
    const statuses = [...(pod.status.initContainerStatuses ?? []), ...(pod.status.containerStatuses ?? [])];
    const failing = statuses.find((c) => START_FAILURES.includes(c.state?.waiting?.reason ?? ""));
    if (!failing) return undefined;
    const placed = scheduled.lastTransitionTime ? new Date(scheduled.lastTransitionTime) : created;
    const since = failures.get(`${pod.metadata?.name}/${failing.name}`) ?? placed;
    const failingFor = now.getTime() - since.getTime();
    if (failingFor < opts.startFailureGraceMs) return undefined;
    const w = failing.state!.waiting!;
    return `the worker could not start: ${w.reason} for container ${failing.name} (image "${failing.image}"), failing for ${minutes(failingFor)} min${w.message ? `: ${w.message}` : ""}`;
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
    const notRun = live.filter(
        (p) =>
            p.status?.phase === "Failed" &&
            (p.status.containerStatuses ?? []).some(
                (c) => c.name === AGENT_CONTAINER && c.state?.terminated?.exitCode === AGENT_EXIT_NOT_RUN,
            ),
    );
    if (notRun.length === 0 || notRun.length < backoffLimit + 1) return undefined;
    const last = notRun[notRun.length - 1].metadata?.name ?? "?";
    return `the worker's agent exited ${notRun.length} time(s) without running the job (it could not acquire it; the agent container's log of pod ${last} says why)`;
}
