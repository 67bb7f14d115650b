/**
 * Every name Scaledkite writes into Kubernetes, in one place: labels and annotations, containers,
 * volumes, Secrets and their keys, ConfigMaps, the workers' service account. Pure data.
 */

export const AGENT_CONTAINER = "agent";
/** The container that runs the job's checkout, hooks and command (without the registration token). */
export const COMMAND_CONTAINER = "command";
export const DIND_CONTAINER = "dind";
/** A step's own pod (stepPod.ts): its checkout, in the agent image, and the init container that copies buildkite-agent for the step's images. */
export const CHECKOUT_CONTAINER = "checkout";
export const COPY_AGENT_CONTAINER = "copy-agent";
/** The volume of the agent token Secret. */
export const AGENT_TOKEN_VOLUME = "agent-token";
/** Labels that find a worker from its Buildkite job (and back). */
export const LABELS = {
    managedBy: "app.kubernetes.io/managed-by",
    component: "app.kubernetes.io/component",
    jobUuid: "buildkite.com/job-uuid",
    queue: "scaledkite.io/queue",
    pipeline: "buildkite.com/pipeline-slug",
    buildNumber: "buildkite.com/build-number",
    organization: "buildkite.com/organization-slug",
} as const;
/** The annotation that carries the worker's queue (the settings key, unlike the label: not shortened). */
export const QUEUE_ANNOTATION = "scaledkite.io/queue";
/** The annotation that carries the job's Buildkite priority (as agent-stack-k8s writes it). */
export const PRIORITY_ANNOTATION = "buildkite.com/job-priority";
/** The annotation that carries when the job became runnable (ISO 8601). */
export const RUNNABLE_AT_ANNOTATION = "scaledkite.io/runnable-at";
/** Annotations that keep node autoscalers from evicting a running build. */
export const DO_NOT_DISRUPT = {
    "karpenter.sh/do-not-disrupt": "true",
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
} as const;
/** The names of the Secrets (in the workers' namespace) that workers read. */
export const SECRET_NAMES = {
    agentToken: "scaledkite-agent-token",
    env: "scaledkite-env",
    gitCredentials: "scaledkite-git-credentials",
    gitSsh: "scaledkite-git-ssh",
} as const;
/** The ConfigMap that holds the agent hooks (`scaledkite:hooks`). */
export const HOOKS_CONFIGMAP = "scaledkite-hooks";
/** The ConfigMap with the ECR login hook and registry list, and the workers' service account. */
export const ECR_HOOKS_CONFIGMAP = "scaledkite-ecr-login";
export const WORKER_SERVICE_ACCOUNT = "scaledkite-worker";
/** Keys inside the git SSH Secret. */
export const GIT_SSH_KEY = "id_ssh";
export const GIT_KNOWN_HOSTS_KEY = "known_hosts";
/** The label that puts a worker pod on its queue's Fargate profile. */
export const FARGATE_LABEL = "scaledkite.io/fargate-queue";
/** The key inside the agent token Secret. */
export const AGENT_TOKEN_KEY = "token";
/** The key inside the git credentials Secret (a git-credentials file). */
export const GIT_CREDENTIALS_KEY = "git-credentials";

/** The label every object Scaledkite creates carries. */
export const MANAGED_BY = { [LABELS.managedBy]: "scaledkite" } as const;

/** The Job name for a Buildkite job: deterministic, so a second event for the job collides. */
export function jobName(prefix: string, jobUuid: string): string {
    return `${prefix}${jobUuid.toLowerCase()}`;
}

/** The longest annotation value Scaledkite writes from a job's text (all annotations together may hold 256 KiB). */
export const MAX_ANNOTATION_LENGTH = 1024;

/** An annotation value from free text: at most MAX_ANNOTATION_LENGTH characters, so a huge branch name cannot make every create fail. */
export function annotationValue(text: string | undefined): string | undefined {
    return text === undefined || text.length <= MAX_ANNOTATION_LENGTH
        ? text
        : `${text.slice(0, MAX_ANNOTATION_LENGTH - 1)}…`;
}

/** A label value from free text: at most 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends. */
export function labelValue(text: string | undefined): string | undefined {
    if (text === undefined) return undefined;
    const cleaned = text
        .replace(/[^A-Za-z0-9\-_.]/g, "-")
        .slice(0, 63)
        .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, "");
    return cleaned === "" ? undefined : cleaned;
}
