/**
 * The settings a worker Job is built from, as the scheduler (Lambda, CLI) holds them.
 *
 * These are plain data, captured by value into the Lambda: they name Secrets, never hold their values.
 */

/** Kubernetes resource requests and limits, e.g. `{requests: {cpu: "1", memory: "2Gi"}}`. */
export interface ResourceSettings {
    requests?: Record<string, string>;
    limits?: Record<string, string>;
}

/** A Kubernetes toleration. */
export interface Toleration {
    key?: string;
    operator?: "Exists" | "Equal";
    value?: string;
    effect?: "NoSchedule" | "PreferNoSchedule" | "NoExecute";
    tolerationSeconds?: number;
}

/** How a queue's workers run docker: see WorkerSettings.dind. */
export type DindMode = "privileged" | "rootless" | "none";

/**
 * What a step may say about its pod (read from the job through the Stacks API): `plugin`, as
 * agent-stack-k8s (the step's `image:`, the `kubernetes` plugin, the `resource_class` tag); `image`,
 * only the step's `image:`; `none`, nothing: every job gets the queue's pod.
 */
export type StepShapeMode = "plugin" | "image" | "none";

/** A size a step picks with the agent tag `resource_class=<name>`: the command containers' resources and a node selector. */
export interface ResourceClass {
    resources: ResourceSettings;
    nodeSelector: Record<string, string>;
}

/** How one queue's workers look. Every key can be set stack-wide and overridden per queue. */
export interface WorkerSettings {
    /** The agent image: the stock `buildkite/agent` image works as is. */
    image: string;
    /**
     * Docker-in-docker beside the agent (core/dind.ts) so steps can use `docker`: `privileged` (dockerd as root in
     * a privileged container), `rootless` (dockerd as uid 1000 inside rootlesskit's user namespace)
     * or `none`.
     */
    dind: DindMode;
    /** The docker-in-docker image (by default the stock one for the mode). */
    dindImage: string;
    /**
     * Resources of the agent container (buildkite-agent, which only coordinates), the command
     * container (the job's checkout and command: the build) and the dind sidecar.
     */
    resources: { agent: ResourceSettings; command: ResourceSettings; dind: ResourceSettings };
    nodeSelector: Record<string, string>;
    tolerations: Toleration[];
    /** Seconds a worker may run before Kubernetes stops it. */
    activeDeadlineSeconds: number;
    /** Seconds a finished Job (and its pod) is kept for inspection before it is deleted. */
    ttlSecondsAfterFinished: number;
    /** Pod retries for failures outside the job itself (a node lost before the agent acquired it). */
    backoffLimit: number;
    /** Extra agent tags (`key=value`), besides `queue=<queue>` and the job's own rules. */
    agentTags: string[];
    /** Extra plain (non-secret) environment variables for the agent. */
    env: Record<string, string>;
    /** Extra labels and annotations on the Job and its pod. */
    labels: Record<string, string>;
    annotations: Record<string, string>;
    /** Seconds the pod gets to stop after Kubernetes asks it to (cancelled job, deadline). */
    terminationGracePeriodSeconds: number;
    /** Extra environment from existing Secrets and ConfigMaps (`envFrom`). */
    envFrom: EnvFromSource[];
    /** Run on EKS Fargate (the program creates the Fargate profile); no dind there. */
    fargate: boolean;
    /** Pod affinity / anti-affinity / node affinity, as Kubernetes takes it. */
    affinity?: Record<string, unknown>;
    /** The pod's service account (e.g. one with an IAM role for the build's AWS access). */
    serviceAccountName?: string;
    /** A strategic-merge patch applied to the pod spec last, for anything without a key of its own. */
    podSpecPatch?: Record<string, unknown>;
    /** What a step may say about its pod. */
    stepShape: StepShapeMode;
    /** Image prefixes a step may ask for (empty: any). */
    allowedImages: string[];
}

/** An `envFrom` source: a whole Secret or ConfigMap as environment variables. */
export type EnvFromSource = { secretRef: { name: string } } | { configMapRef: { name: string } };

/** Everything the scheduler needs to turn an event into a Job. */
export interface SchedulerSettings {
    namespace: string;
    jobPrefix: string;
    /** Served queues, each with its settings already merged over the stack-wide defaults. */
    queues: Record<string, WorkerSettings>;
    /**
     * Which optional Secrets and ConfigMaps exist, so workers only reference what is there; `ecr`: the
     * ECR login hook and the workers' service account (bound to their IAM role).
     */
    secrets: { env: boolean; gitCredentials: boolean; gitSsh: boolean; hooks: boolean; ecr: boolean };
    /** Sizes steps pick with `resource_class=<name>`. */
    resourceClasses: Record<string, ResourceClass>;
    /** PriorityClasses by the lowest Buildkite job priority each takes (priorityClasses.ts). */
    priorityClasses: Record<string, string>;
    /** The Stacks API the scheduler reads jobs from (present when a queue takes its shape from the job). */
    stacks?: { stackKey: string; endpoint: string };
}

/**
 * A served queue's settings, or undefined when `name` is not one: an own key only, so a name read from
 * a pod's annotation ("constructor", "__proto__") cannot reach Object.prototype. Pure.
 */
export function queueSettings(
    settings: Pick<SchedulerSettings, "queues">,
    name: string | undefined,
): WorkerSettings | undefined {
    return name !== undefined && Object.prototype.hasOwnProperty.call(settings.queues, name)
        ? settings.queues[name]
        : undefined;
}
