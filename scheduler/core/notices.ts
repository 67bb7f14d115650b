/**
 * What the sweep tells Buildkite while a job waits for its worker, on the job's timeline (Stacks API
 * notifications): no node fits, the image does not pull, the worker is still starting, the spend cap
 * is full. Pure, and stateless: a job is told when its wait passes 1, 5, 15 and 60 minutes, each by
 * the one sweep whose interval that moment falls in, so it gets at most four messages per reason.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { LABELS, RUNNABLE_AT_ANNOTATION } from "./names";

/** Minutes of waiting at which a job is told why it waits. */
/** A message on a job's timeline in Buildkite (the Stacks API's notification). */
export interface StackNotification {
    job_uuid: string;
    /** At most MAX_NOTIFICATION_DETAIL characters (clients/stacksApi.ts). */
    detail: string;
    /** ISO 8601. */
    timestamp: string;
}

export const NOTICE_AT_MINUTES = [1, 5, 15, 60];

/** The checkpoint (minutes) a wait of `waitMs` passed during the last `intervalMs`, if any. Pure. */
export function passedCheckpoint(waitMs: number, intervalMs: number): number | undefined {
    return NOTICE_AT_MINUTES.find((m) => m * 60_000 <= waitMs && m * 60_000 > waitMs - intervalMs);
}

const IMAGE_PROBLEMS = ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"];

/** Why a waiting worker pod waits, in words a pipeline author reads; undefined once it runs. */
export function waitingReason(pod: V1Pod): string | undefined {
    if (pod.status?.phase !== "Pending" || pod.metadata?.deletionTimestamp) return undefined;
    const scheduled = pod.status.conditions?.find((c) => c.type === "PodScheduled");
    if (scheduled?.status !== "True") {
        return `no node fits its worker yet${scheduled?.message ? ` (${scheduled.message.split(".")[0]})` : ""}`;
    }
    const statuses = [...(pod.status.initContainerStatuses ?? []), ...(pod.status.containerStatuses ?? [])];
    const pull = statuses.find((c) => IMAGE_PROBLEMS.includes(c.state?.waiting?.reason ?? ""));
    if (pull) return `its worker cannot pull image ${pull.image} yet (${pull.state!.waiting!.reason}); retrying`;
    return `its worker is starting on node ${pod.spec?.nodeName ?? "?"} (pulling images or starting containers)`;
}

/** A job the sweep could not give a worker because the spend cap (ResourceQuota) is full. */
export interface DeferredJob {
    uuid: string;
    /** When it was scheduled (Stacks API scheduled_at). */
    scheduledAt?: string;
}

/**
 * The notifications one sweep sends: for each waiting worker pod and each deferred job whose wait
 * passed a checkpoint since the last sweep. Each detail fits the Stacks API's 256 characters. Pure.
 */
export function waitNotices(
    pods: V1Pod[],
    deferred: DeferredJob[],
    now: Date,
    intervalMs: number,
    reasonOf: (pod: V1Pod) => string | undefined = waitingReason,
): StackNotification[] {
    const out: StackNotification[] = [];
    const timestamp = now.toISOString();
    const add = (uuid: string, since: number, reason: (minutes: number) => string) => {
        if (Number.isNaN(since)) return;
        const minutes = passedCheckpoint(now.getTime() - since, intervalMs);
        if (minutes === undefined) return;
        const detail = `Scaledkite: waiting ${minutes} min: ${reason(minutes)}`;
        out.push({ job_uuid: uuid, detail: detail.length > 256 ? `${detail.slice(0, 255)}…` : detail, timestamp });
    };
    for (const pod of pods) {
        const uuid = pod.metadata?.labels?.[LABELS.jobUuid];
        const reason = reasonOf(pod);
        if (!uuid || !reason) continue;
        const runnable = pod.metadata?.annotations?.[RUNNABLE_AT_ANNOTATION];
        const since = Date.parse(runnable ?? String(pod.metadata?.creationTimestamp ?? ""));
        add(uuid, since, () => reason);
    }
    for (const job of deferred) {
        add(
            job.uuid,
            Date.parse(job.scheduledAt ?? ""),
            () =>
                "the stack's spend cap is full (maxConcurrentJobs, maxCpu or maxMemory); its worker starts when a running one finishes",
        );
    }
    return out;
}

/** When the sweep lists each queue again within one run, so Buildkite keeps showing it Connected. */
export const HEARTBEAT_EVERY_MS = 20_000;

/**
 * The offsets (ms after the sweep began) of the light listings that keep queues Connected until the
 * next sweep: every HEARTBEAT_EVERY_MS while at least `marginMs` of the interval and of the Lambda's
 * time remain. Pure.
 */
export function heartbeatOffsets(intervalMs: number, timeoutMs: number, marginMs = 5_000): number[] {
    const out: number[] = [];
    for (let t = HEARTBEAT_EVERY_MS; t + marginMs <= Math.min(intervalMs, timeoutMs); t += HEARTBEAT_EVERY_MS)
        out.push(t);
    return out;
}
