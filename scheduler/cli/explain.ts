/**
 * `scaledkite explain`: what happened to one Buildkite job's worker, in a few lines a person reads.
 * Pure: from the worker's Job, pods and their events (the CLI fetches them).
 */
import type { CoreV1Event, V1ContainerStatus, V1Job, V1Pod } from "@kubernetes/client-node";
import { AGENT_EXIT_CANNOT_ACQUIRE } from "../core/agentLauncher";
import { START_FAILURES } from "../core/stuck";
import { AGENT_EXIT_NOT_RUN } from "../core/agentLauncher";
import {
    AGENT_CONTAINER,
    COMMAND_CONTAINER,
    DIND_CONTAINER,
    QUEUE_ANNOTATION,
    RUNNABLE_AT_ANNOTATION,
} from "../core/names";

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

/** The job UUID in a UUID or a Buildkite job URL (…/builds/123#<uuid>, …/jobs/<uuid>); undefined if none. Pure. */
export function jobUuidOf(text: string): string | undefined {
    return UUID.exec(text)?.[0].toLowerCase();
}

export interface WorkerFacts {
    jobUuid: string;
    namespace: string;
    jobName: string;
    job?: V1Job;
    pods: V1Pod[];
    /** Events of the Job and its pods, any order. */
    events: CoreV1Event[];
}

/** Waiting reasons that say a container cannot start: the sweep's start failures, and a crash loop. */
const START_PROBLEMS = [...START_FAILURES, "CrashLoopBackOff"];

const time = (t: Date | string | undefined) =>
    t === undefined ? "?" : new Date(t).toISOString().replace(".000Z", "Z");

function containerLine(c: V1ContainerStatus): string {
    const s = c.state;
    const restarts = c.restartCount ? `, ${c.restartCount} restart(s)` : "";
    if (s?.running) return `${c.name} running since ${time(s.running.startedAt)}${restarts}`;
    if (s?.terminated) {
        const code = s.terminated.exitCode;
        const meaning =
            c.name === AGENT_CONTAINER && code === AGENT_EXIT_CANNOT_ACQUIRE
                ? " (could not acquire the job: taken or cancelled)"
                : c.name === AGENT_CONTAINER && code === AGENT_EXIT_NOT_RUN
                  ? " (the agent ran no job)"
                  : "";
        return `${c.name} exited ${code}${meaning}${s.terminated.reason && s.terminated.reason !== "Completed" ? ` (${s.terminated.reason})` : ""}${restarts}`;
    }
    return `${c.name} waiting${s?.waiting?.reason ? `: ${s.waiting.reason}` : ""}${restarts}`;
}

/** What the pod is doing, in one phrase. */
function podState(pod: V1Pod): string {
    const phase = pod.status?.phase ?? "Unknown";
    if (pod.metadata?.deletionTimestamp) return `stopping (deleted at ${time(pod.metadata.deletionTimestamp)})`;
    const scheduled = pod.status?.conditions?.find((c) => c.type === "PodScheduled");
    if (phase === "Pending" && scheduled?.status !== "True")
        return `waiting for a node: ${scheduled?.message ?? scheduled?.reason ?? "not scheduled yet"}`;
    const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
    const problem = statuses.find((c) => START_PROBLEMS.includes(c.state?.waiting?.reason ?? ""));
    if (problem)
        return `cannot start: ${problem.state!.waiting!.reason} for container ${problem.name} (image "${problem.image}")${problem.state!.waiting!.message ? `: ${problem.state!.waiting!.message}` : ""}`;
    if (phase === "Pending") return `starting on node ${pod.spec?.nodeName}`;
    if (phase === "Running") return `running on node ${pod.spec?.nodeName}`;
    if (phase === "Succeeded") return "finished";
    if (phase === "Failed")
        return `failed${pod.status?.reason ? ` (${pod.status.reason}: ${pod.status.message ?? ""})` : ""}`;
    return phase;
}

/** The problems the events report (warnings), newest last, each once. */
function problems(events: CoreV1Event[]): string[] {
    const seen = new Set<string>();
    const out: string[] = [];
    const when = (e: CoreV1Event) => new Date(e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? 0).getTime();
    for (const e of [...events].filter((x) => x.type === "Warning").sort((a, b) => when(a) - when(b))) {
        const text = `${e.reason}: ${(e.message ?? "").split("\n")[0]}`;
        if (seen.has(text)) continue;
        seen.add(text);
        out.push(`${text}${e.count && e.count > 1 ? ` (${e.count} times)` : ""}`);
    }
    return out.slice(-5);
}

/** The explanation: a handful of lines, the first saying the state. Pure. */
export function explainWorker(f: WorkerFacts): string[] {
    const name = `${f.namespace}/${f.jobName}`;
    if (!f.job && f.pods.length === 0) {
        return [
            `job ${f.jobUuid}: no worker (no Job ${name})`,
            `  either no event reached the scheduler (the sweep creates it within its interval, if the job is still scheduled),`,
            `  the event was ignored (another queue) or failed (its log line says why: "jobUuid":"${f.jobUuid}"),`,
            `  or the worker finished and was deleted after ttlSecondsAfterFinished`,
        ];
    }
    const lines: string[] = [];
    const job = f.job;
    const created = job?.metadata?.creationTimestamp;
    const runnable = job?.metadata?.annotations?.[RUNNABLE_AT_ANNOTATION];
    const queue = job?.metadata?.annotations?.[QUEUE_ANNOTATION];
    const conditions = job?.status?.conditions?.filter((c) => c.status === "True") ?? [];
    const final = conditions.find((c) => c.type === "Complete" || c.type === "Failed");
    const pod = [...f.pods]
        .sort(
            (a, b) =>
                new Date(a.metadata?.creationTimestamp ?? 0).getTime() -
                new Date(b.metadata?.creationTimestamp ?? 0).getTime(),
        )
        .pop();
    const state = final
        ? final.type === "Complete"
            ? "completed"
            : `failed: ${final.reason}${final.message ? ` (${final.message})` : ""}`
        : pod
          ? podState(pod)
          : "no pod yet";
    lines.push(`job ${f.jobUuid}: ${state}`);
    lines.push(
        `  worker Job ${name}${queue ? ` (queue ${queue})` : ""} created ${time(created)}${runnable && created ? `, ${Math.max(0, Math.round((new Date(created).getTime() - Date.parse(runnable)) / 1000))} s after the job became runnable` : ""}`,
    );
    if (pod) {
        const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
        lines.push(
            `  pod ${pod.metadata?.name}${f.pods.length > 1 ? ` (the newest of ${f.pods.length})` : ""}: ${pod.status?.phase ?? "?"}${statuses.length ? `; ${statuses.map(containerLine).join("; ")}` : ""}`,
        );
    }
    for (const p of problems(f.events)) lines.push(`  problem: ${p}`);
    if (pod) {
        const logs = (c: string) => `kubectl logs -n ${f.namespace} ${pod.metadata?.name} -c ${c}`;
        const containers = new Set(
            [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => c.name),
        );
        lines.push(
            `  logs: ${logs(AGENT_CONTAINER)} (the agent)${containers.has(COMMAND_CONTAINER) ? `; ${logs(COMMAND_CONTAINER)} (the build)` : ""}${containers.has(DIND_CONTAINER) ? `; ${logs(DIND_CONTAINER)} (dockerd)` : ""}`,
        );
    }
    return lines;
}
