/**
 * Which Buildkite job a pod or Job in the workers' namespace is the worker of, trusting no single
 * label: anyone who may create a Job there can label it with another job's uuid, and the sweep must
 * never fail that other job in Buildkite because of it. Pure.
 */
import type { V1Job, V1ObjectMeta, V1Pod } from "@kubernetes/client-node";
import { jobName, LABELS, QUEUE_ANNOTATION } from "./names";

/** A worker's Buildkite job, its worker Job's name and its queue (the settings key). */
export interface WorkerIdentity {
    uuid: string;
    jobName: string;
    queue?: string;
}

const JOB_NAME_LABELS = ["batch.kubernetes.io/job-name", "job-name"];

/** The identity a worker Job's metadata claims, when its name is the one Scaledkite gives that job's worker. */
function claimed(meta: V1ObjectMeta | undefined, name: string | undefined, prefix: string): WorkerIdentity | undefined {
    const uuid = meta?.labels?.[LABELS.jobUuid];
    if (!uuid || !name || meta?.labels?.[LABELS.managedBy] !== "scaledkite") return undefined;
    if (jobName(prefix, uuid) !== name) return undefined;
    return { uuid, jobName: name, queue: meta?.annotations?.[QUEUE_ANNOTATION] };
}

/** A worker Job's identity: its name must be the name Scaledkite gives its labelled job's worker. */
export function jobIdentity(job: V1Job, prefix: string): WorkerIdentity | undefined {
    return claimed(job.metadata, job.metadata?.name, prefix);
}

/**
 * A worker pod's identity: its controller is a Job whose name is the pod's job-name label and the name
 * Scaledkite gives the pod's labelled job's worker. A pod made by hand, or by a Job of another name,
 * has none.
 */
export function podIdentity(pod: V1Pod, prefix: string): WorkerIdentity | undefined {
    const owner = pod.metadata?.ownerReferences?.find((o) => o.controller && o.kind === "Job");
    if (!owner || JOB_NAME_LABELS.some((l) => (pod.metadata?.labels?.[l] ?? owner.name) !== owner.name))
        return undefined;
    return claimed(pod.metadata, owner.name, prefix);
}
