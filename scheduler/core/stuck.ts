/**
 * Whether a worker pod will still run its job, and if not why, in words a person understands. Pure:
 * from the pod, the kubelet's events about it and the time. The sweep's watch judges every worker each
 * second with this; the per-minute sweep judges them again as the safety net.
 *
 * A worker may still start, and is left alone, when:
 * - it is not placed yet (no node fits, a node is being added, the spend cap is full) for less than
 *   the pending timeout (default 15 min: the cluster autoscaler's own limit for a new node,
 *   `--max-node-provision-time`), counted from its creation or from the last scale-up the
 *   autoscaler triggered for it, whichever is later (cluster-autoscaler 1.36.1
 *   `processors/status/eventing_scale_up_processor.go`: a `TriggeredScaleUp` or `NotTriggerScaleUp`
 *   event on the pod, each sent at most once per 5 min per pod, `utils/kubernetes/factory.go`);
 * - an image pull is in progress, even after an earlier pull failed: the kubelet keeps showing
 *   `ImagePullBackOff` during the next pull (kubelet v1.34.4 `pkg/kubelet/images/image_manager.go`,
 *   pullImage: the pull runs inside the pod's sync, so the status changes only when it ends), so the
 *   back-off state alone says nothing; its `Pulling`, `Pulled` and `Failed` events, one per attempt
 *   (aggregated with a count), say whether the last attempt failed;
 * - a container cannot be created yet (a slow containerd with a large image) fewer than
 *   CREATE_FAILURES_TO_GIVE_UP times.
 * It will not start, and its job is failed with the reason, when:
 * - its image reference is invalid (`InvalidImageName`, `ErrImageNeverPull`): at once;
 * - its image pulls keep failing (at least PULL_FAILURES_TO_GIVE_UP failed attempts, none in
 *   progress) and the start-failure grace (default 30 s, from the pod's start, as agent-stack-k8s's
 *   image-pull-backoff-grace-period) has passed; a container's config (a missing Secret key) after
 *   the grace;
 * - it is unschedulable past the pending timeout.
 * It failed before its agent could have run the job, which only the job's state in Buildkite can
 * confirm (`beforeAcquire`), when the pod failed (an init container or the agent exited non-zero, the
 * deadline passed, it was evicted) other than by the agent's own "not run" (28, which the Job retries)
 * or "rejected" (27, the job is someone else's), or when a sidecar keeps crashing.
 */
import type { CoreV1Event, V1ContainerStatus, V1Pod } from "@kubernetes/client-node";
import { AGENT_EXIT_CANNOT_ACQUIRE, AGENT_EXIT_NOT_RUN } from "./agentLauncher";
import { AGENT_CONTAINER, DIND_CONTAINER } from "./names";
import type { PodHistory } from "./podHistory";

export interface StuckOptions {
    /** How long a pod may stay unscheduled (no node fits, no capacity). */
    pendingTimeoutMs: number;
    /** How long after the pod's start its images may fail to pull, or its containers to be created, before it is given up on. */
    startFailureGraceMs: number;
}

/** Failed pull attempts in a row (none in progress) before a worker is given up on. */
export const PULL_FAILURES_TO_GIVE_UP = 2;
/** Failed container creations before a worker is given up on (the kubelet retries each sync). */
export const CREATE_FAILURES_TO_GIVE_UP = 3;
/** Restarts of a crashing sidecar before it counts as crash-looping. */
export const CRASH_RESTARTS_TO_GIVE_UP = 2;

/** Waiting reasons that say a container is failing to start (as opposed to still starting). */
export const START_FAILURES = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];
const PULL_FAILURES = ["ErrImagePull", "ImagePullBackOff"];
const INVALID_IMAGE = ["InvalidImageName", "ErrImageNeverPull"];

/** Why a worker will never run, for the metrics (one CloudWatch dimension value each). */
export const CAUSES = ["unschedulable", "image", "container", "failed", "crash", "refused", "not-run"] as const;
export type Cause = (typeof CAUSES)[number];

/** What is to be done about a worker pod. */
export type WorkerState =
    /** Running, done, or being deleted: nothing to judge. */
    | { kind: "fine" }
    /** It may still start: why it waits (for the job's timeline). */
    | { kind: "waiting"; reason: string }
    /** It will never run its job: fail the job with the reason. */
    | { kind: "unrunnable"; reason: string; cause: Cause }
    /** It failed before its agent could have run the job: fail the job if Buildkite still has it scheduled. */
    | { kind: "beforeAcquire"; reason: string; cause: Cause };

const FINE: WorkerState = { kind: "fine" };
const minutes = (ms: number) => Math.round(ms / 60_000);
const seconds = (ms: number) => Math.round(ms / 1000);

/** When the pod started: the kubelet's startTime, else its placement, else its creation. */
function startedAt(pod: V1Pod, now: Date): Date {
    const scheduled = pod.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "True");
    const at = pod.status?.startTime ?? scheduled?.lastTransitionTime ?? pod.metadata?.creationTimestamp;
    return at ? new Date(at) : now;
}

/**
 * Judges one worker pod. Without the events about a container (`history` undefined: they could not be
 * read; or none about it: expired after the API server's event TTL), its failures count by the grace alone.
 */
export function judgeWorker(pod: V1Pod, now: Date, opts: StuckOptions, history?: PodHistory): WorkerState {
    if (pod.metadata?.deletionTimestamp) return FINE;
    const phase = pod.status?.phase;
    if (phase === "Failed") return failedPod(pod);
    if (phase !== "Pending" && phase !== "Running") return FINE;
    const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
    // A sidecar that keeps exiting (with any code: a sidecar should not exit): between restarts it shows
    // its exit, or CrashLoopBackOff; until it stays up, the containers after it do not start (the
    // kubelet starts them once it has started).
    // dind, a regular container the pod does not restart, that exited before the agent (its wrapper
    // exits 0 only once the agent has: core/dind.ts) has left the build without docker.
    const crashing = statuses.find(
        (c) =>
            (c.restartCount >= CRASH_RESTARTS_TO_GIVE_UP && !c.state?.running) ||
            (c.name === DIND_CONTAINER && (c.state?.terminated?.exitCode ?? 0) !== 0),
    );
    if (crashing) {
        const last = crashing.state?.terminated ?? crashing.lastState?.terminated;
        const exit = last ? `${last.exitCode}${last.reason ? ` ${last.reason}` : ""}` : "";
        return {
            kind: "beforeAcquire",
            cause: "crash",
            reason:
                crashing.restartCount >= CRASH_RESTARTS_TO_GIVE_UP
                    ? `container ${crashing.name} of the worker keeps crashing (restarted ${crashing.restartCount} times${exit ? `, last exit ${exit}` : ""}); its log says why`
                    : `container ${crashing.name} of the worker exited ${exit} before the agent did, so the build has no docker; its log says why`,
        };
    }
    if (phase === "Running") return FINE;
    const created = pod.metadata?.creationTimestamp ? new Date(pod.metadata.creationTimestamp) : now;
    const scheduled = pod.status?.conditions?.find((c) => c.type === "PodScheduled");
    if (scheduled?.status !== "True") return unscheduled(pod, created, now, opts, history);
    const failing = statuses.find((c) => START_FAILURES.includes(c.state?.waiting?.reason ?? ""));
    if (!failing) return { kind: "waiting", reason: `its worker is starting on node ${pod.spec?.nodeName ?? "?"}` };
    return startFailure(pod, failing, now.getTime() - startedAt(pod, now).getTime(), opts, history);
}

/**
 * A pod no node has taken: it waits the pending timeout from its creation, or from the last scale-up
 * the cluster autoscaler triggered for it (a node on its way gets the autoscaler's own time to come).
 */
function unscheduled(
    pod: V1Pod,
    created: Date,
    now: Date,
    opts: StuckOptions,
    history: PodHistory | undefined,
): WorkerState {
    const scheduled = pod.status?.conditions?.find((c) => c.type === "PodScheduled");
    const why = scheduled?.message ?? scheduled?.reason ?? "no node fits";
    const news = history?.scaleUps.get(pod.metadata?.name ?? "");
    const since = Math.max(created.getTime(), news?.triggeredAt ?? 0);
    const triggeredLast = news?.triggeredAt !== undefined && news.triggeredAt >= (news.notTriggeredAt ?? 0);
    const autoscaler = triggeredLast
        ? `; the cluster autoscaler is adding a node (${news.triggered})`
        : news?.notTriggered
          ? `; the cluster autoscaler adds none (${news.notTriggered})`
          : "";
    if (now.getTime() - since < opts.pendingTimeoutMs)
        return { kind: "waiting", reason: `no node fits its worker yet (${why.split(".")[0]}${autoscaler})` };
    return {
        kind: "unrunnable",
        cause: "unschedulable",
        reason: `the worker pod could not be scheduled for ${minutes(now.getTime() - created.getTime())} min: ${why}${autoscaler}`,
    };
}

/**
 * Whether judging the pod needs the events about it: a pull or a creation failing past the grace, or
 * a pod unscheduled past the pending timeout (whether the autoscaler has since triggered a scale-up).
 */
export function needsHistory(pod: V1Pod, now: Date, opts: StuckOptions): boolean {
    if (pod.status?.phase !== "Pending" || pod.metadata?.deletionTimestamp) return false;
    const scheduled = pod.status.conditions?.find((c) => c.type === "PodScheduled");
    if (scheduled?.status !== "True") {
        const created = pod.metadata?.creationTimestamp ? new Date(pod.metadata.creationTimestamp).getTime() : 0;
        return now.getTime() - created >= opts.pendingTimeoutMs;
    }
    const statuses = [...(pod.status.initContainerStatuses ?? []), ...(pod.status.containerStatuses ?? [])];
    const retried = statuses.some((c) =>
        [...PULL_FAILURES, "CreateContainerError"].includes(c.state?.waiting?.reason ?? ""),
    );
    return retried && now.getTime() - startedAt(pod, now).getTime() >= opts.startFailureGraceMs;
}

/** A container that is failing to start: wait, or give up. */
function startFailure(
    pod: V1Pod,
    c: V1ContainerStatus,
    sinceStart: number,
    opts: StuckOptions,
    history: PodHistory | undefined,
): WorkerState {
    const w = c.state!.waiting!;
    const attempts = history?.attempts.get(`${pod.metadata?.name}/${c.name}`);
    const what = `${w.reason} for container ${c.name} (image "${c.image}")`;
    const unrunnable = (detail: string): WorkerState => ({
        kind: "unrunnable",
        cause: [...PULL_FAILURES, ...INVALID_IMAGE].includes(w.reason!) ? "image" : "container",
        reason: `the worker could not start: ${what}, ${detail}${w.message ? `: ${w.message}` : ""}`,
    });
    if (INVALID_IMAGE.includes(w.reason!)) return unrunnable("which no retry can fix");
    const inGrace = sinceStart < opts.startFailureGraceMs;
    if (PULL_FAILURES.includes(w.reason!)) {
        const failed = attempts?.failedPulls ?? 0;
        const pulling = attempts ? attempts.pulling > attempts.failedPulls + attempts.pulled : false;
        if (inGrace || pulling || (attempts && failed < PULL_FAILURES_TO_GIVE_UP))
            return {
                kind: "waiting",
                reason: `its worker cannot pull image ${c.image} yet (${failed} failed pull(s)${pulling ? ", pulling again" : ""}); retrying`,
            };
        return unrunnable(
            `${failed ? `${failed} pulls failed` : "failing"} in ${seconds(sinceStart)} s since the pod started`,
        );
    }
    if (w.reason === "CreateContainerError" && attempts && attempts.errors < CREATE_FAILURES_TO_GIVE_UP)
        return {
            kind: "waiting",
            reason: `its worker's container ${c.name} is not created yet (${w.reason}); retrying`,
        };
    if (inGrace)
        return { kind: "waiting", reason: `its worker's container ${c.name} cannot start yet (${w.reason}); retrying` };
    return unrunnable(`failing for ${seconds(sinceStart)} s since the pod started`);
}

/** Why a failed pod did not run its job, or FINE when its agent said the job is not ours (27) or the Job retries it (28). */
function failedPod(pod: V1Pod): WorkerState {
    const agent = pod.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER)?.state?.terminated;
    if (agent && (agent.exitCode === AGENT_EXIT_CANNOT_ACQUIRE || agent.exitCode === AGENT_EXIT_NOT_RUN)) return FINE;
    const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
    const culprit = statuses.find((c) => (c.state?.terminated?.exitCode ?? 0) !== 0);
    const t = culprit?.state?.terminated;
    const reason = t
        ? `container ${culprit!.name} exited ${t.exitCode}${t.reason ? ` (${t.reason})` : ""}${t.message ? `: ${t.message.trim().split("\n").pop()}` : ""}`
        : `the pod failed${pod.status?.reason ? ` (${pod.status.reason})` : ""}${pod.status?.message ? `: ${pod.status.message}` : ""}`;
    return { kind: "beforeAcquire", cause: "failed", reason: `the worker failed before it ran the job: ${reason}` };
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

/** How long a Job may have no pod, while the Job controller reports pod creations refused, before its job is failed. */
export const NO_POD_GRACE_MS = 30_000;

/**
 * Why a worker Job that has no pod will never get one: the Job controller's `FailedCreate` events
 * say the API server refused the pod (an admission policy, a webhook, a LimitRange) for at least
 * NO_POD_GRACE_MS since the Job was made; undefined while it may still get one. A refusal by the
 * spend cap (ResourceQuota: "exceeded quota") is the cap working: it waits. `events` are the Job's. Pure.
 */
export function noPodReason(jobCreated: Date, events: CoreV1Event[], now: Date): string | undefined {
    const refusals = events.filter((e) => e.reason === "FailedCreate" && e.message);
    const last = refusals[refusals.length - 1];
    if (!last || /exceeded quota/.test(last.message!)) return undefined;
    if (now.getTime() - jobCreated.getTime() < NO_POD_GRACE_MS) return undefined;
    return `the cluster refused the worker pod: ${last.message!.replace(/^Error creating: /, "")}`;
}
