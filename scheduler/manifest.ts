/**
 * The worker Job: one pure function from (settings, job) to the Kubernetes manifest.
 *
 * The pod runs the stock buildkite-agent image with `start` and BUILDKITE_AGENT_ACQUIRE_JOB, so the
 * agent runs exactly that one Buildkite job and exits; a small launcher (agentLauncher.ts) in front
 * of the image's entrypoint cancels the job when the pod is stopped and fails the pod when the agent
 * exits without running the job. Docker-in-docker is a native sidecar (an init container with
 * restartPolicy Always): Kubernetes stops it once the agent exits, so the pod completes with no hook
 * or kubectl. dockerd listens only on a unix socket in a volume the two containers share: no TCP
 * port. Only the sidecar is privileged; the agent container is not.
 */
import type { V1Container, V1EnvVar, V1Job, V1PodSpec, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import { AGENT_EXIT_NOT_RUN, agentGracePeriods, LAUNCHER_PATH, LAUNCHER_SCRIPT, readOnlyCredentialHelper } from "./agentLauncher";
import { jobUrl, ScheduledJob } from "./event";
import {
    AGENT_TOKEN_KEY, ECR_HOOKS_CONFIGMAP, FARGATE_LABEL, GIT_CREDENTIALS_KEY, GIT_KNOWN_HOSTS_KEY, GIT_SSH_KEY, HOOKS_CONFIGMAP, SchedulerSettings, SECRET_NAMES,
    WORKER_SERVICE_ACCOUNT, WorkerSettings,
} from "./settings";
import { strategicMerge } from "./strategicMerge";

export const AGENT_CONTAINER = "agent";
export const DIND_CONTAINER = "dind";
/** The agent exits with this code when it cannot acquire the job (taken, cancelled): never retry it. */
export const AGENT_EXIT_CANNOT_ACQUIRE = 27;
const BUILD_PATH = "/buildkite/builds";
const SECRETS_PATH = "/buildkite/secrets";
const SSH_PATH = "/buildkite/ssh";
const HOOKS_PATH = "/buildkite/hooks";
/** Scaledkite's own agent hooks (the ECR login), beside the user's: the agent runs both. */
export const SCALEDKITE_HOOKS_PATH = "/buildkite/scaledkite-hooks";

/** Annotations that keep node autoscalers from evicting a running build. */
export const DO_NOT_DISRUPT = {
    "karpenter.sh/do-not-disrupt": "true",
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
} as const;
/** dockerd's socket, in a volume shared by the dind sidecar and the agent container. */
const DOCKER_SOCKET_DIR = "/var/run/dind";
export const DOCKER_HOST = `unix://${DOCKER_SOCKET_DIR}/docker.sock`;

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

/** The Job name for a Buildkite job: deterministic, so a second event for the job collides. */
export function jobName(prefix: string, jobUuid: string): string {
    return `${prefix}${jobUuid.toLowerCase()}`;
}

/** A label value from free text: at most 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends. */
export function labelValue(text: string | undefined): string | undefined {
    if (text === undefined) return undefined;
    const cleaned = text.replace(/[^A-Za-z0-9\-_.]/g, "-").slice(0, 63).replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, "");
    return cleaned === "" ? undefined : cleaned;
}

function compact<T extends Record<string, string | undefined>>(obj: T): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(obj)) if (v !== undefined && v !== "") out[k] = v;
    return out;
}

function agentEnv(settings: SchedulerSettings, worker: WorkerSettings, job: ScheduledJob, tags: string[]): V1EnvVar[] {
    const env: V1EnvVar[] = [
        { name: "BUILDKITE_AGENT_TOKEN", valueFrom: { secretKeyRef: { name: SECRET_NAMES.agentToken, key: AGENT_TOKEN_KEY } } },
        { name: "BUILDKITE_AGENT_ACQUIRE_JOB", value: job.uuid },
        { name: "BUILDKITE_AGENT_TAGS", value: [...tags, ...worker.agentTags].join(",") },
        { name: "BUILDKITE_AGENT_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
        { name: "BUILDKITE_BUILD_PATH", value: BUILD_PATH },
        { name: "BUILDKITE_AGENT_DISCONNECT_AFTER_JOB", value: "true" },
        ...gracePeriodEnv(worker),
    ];
    if (worker.dind) env.push({ name: "DOCKER_HOST", value: DOCKER_HOST });
    if (settings.secrets.gitCredentials) {
        // git reads this helper through its environment config: no hook and no custom image.
        env.push(
            { name: "GIT_CONFIG_COUNT", value: "1" },
            { name: "GIT_CONFIG_KEY_0", value: "credential.helper" },
            { name: "GIT_CONFIG_VALUE_0", value: readOnlyCredentialHelper(`${SECRETS_PATH}/${GIT_CREDENTIALS_KEY}`) },
        );
    }
    if (settings.secrets.gitSsh) {
        env.push({
            name: "GIT_SSH_COMMAND",
            value: `ssh -i ${SSH_PATH}/${GIT_SSH_KEY} -o IdentitiesOnly=yes -o UserKnownHostsFile=${SSH_PATH}/${GIT_KNOWN_HOSTS_KEY} -o StrictHostKeyChecking=yes`,
        });
    }
    if (settings.secrets.hooks) env.push({ name: "BUILDKITE_HOOKS_PATH", value: HOOKS_PATH });
    if (settings.secrets.ecr) {
        env.push(
            { name: "BUILDKITE_ADDITIONAL_HOOKS_PATHS", value: SCALEDKITE_HOOKS_PATH },
            // The login's messages name the service account that should carry the role.
            { name: "SCALEDKITE_SERVICE_ACCOUNT", valueFrom: { fieldRef: { fieldPath: "spec.serviceAccountName" } } },
        );
    }
    for (const [name, value] of Object.entries(worker.env)) env.push({ name, value });
    return env;
}

/** The agent cancels its job within the pod's termination grace (see agentLauncher.ts). */
function gracePeriodEnv(worker: WorkerSettings): V1EnvVar[] {
    const { cancelSeconds, signalSeconds } = agentGracePeriods(worker.terminationGracePeriodSeconds);
    return [
        { name: "BUILDKITE_CANCEL_GRACE_PERIOD", value: String(cancelSeconds) },
        { name: "BUILDKITE_SIGNAL_GRACE_PERIOD_SECONDS", value: String(signalSeconds) },
    ];
}

function dindSidecar(worker: WorkerSettings): V1Container {
    return {
        name: DIND_CONTAINER,
        image: worker.dindImage,
        restartPolicy: "Always",
        // dockerd needs privileges; it is the only privileged container in the pod.
        securityContext: { privileged: true },
        // Arguments that start with `dockerd` pass through the docker:dind entrypoint unchanged;
        // a first argument starting with "-" would make it add its defaults, among them
        // --host=tcp://0.0.0.0:2375 (docker-library/docker, dockerd-entrypoint.sh).
        args: ["dockerd", `--host=${DOCKER_HOST}`],
        // Ready when the daemon answers on its socket, not merely when a file exists.
        startupProbe: {
            exec: { command: ["docker", `--host=${DOCKER_HOST}`, "version", "--format", "{{.Server.Version}}"] },
            periodSeconds: 1, timeoutSeconds: 5, failureThreshold: 120,
        },
        resources: worker.resources.dind,
        volumeMounts: [
            { name: "build", mountPath: BUILD_PATH },
            { name: "docker", mountPath: "/var/lib/docker" },
            { name: "docker-socket", mountPath: DOCKER_SOCKET_DIR },
        ],
    };
}

function podSpec(settings: SchedulerSettings, worker: WorkerSettings, agent: V1Container, volumes: V1Volume[]): V1PodSpec {
    // With ECR, the workers' own service account carries their IAM role (a queue may name another).
    const serviceAccountName = worker.serviceAccountName ?? (settings.secrets.ecr ? WORKER_SERVICE_ACCOUNT : undefined);
    const spec: V1PodSpec = {
        restartPolicy: "Never",
        automountServiceAccountToken: false,
        terminationGracePeriodSeconds: worker.terminationGracePeriodSeconds,
        ...(serviceAccountName ? { serviceAccountName } : {}),
        ...(Object.keys(worker.nodeSelector).length ? { nodeSelector: worker.nodeSelector } : {}),
        ...(worker.tolerations.length ? { tolerations: worker.tolerations } : {}),
        ...(worker.affinity ? { affinity: worker.affinity as V1PodSpec["affinity"] } : {}),
        ...(worker.dind ? { initContainers: [dindSidecar(worker)] } : {}),
        containers: [agent],
        volumes,
    };
    return worker.podSpecPatch ? strategicMerge(spec as unknown as Record<string, unknown>, worker.podSpecPatch) as unknown as V1PodSpec : spec;
}

/**
 * Builds the worker Job for `job` on `queue` (a key of settings.queues) with the agent tags from
 * queue matching.
 */
export function buildJobManifest(settings: SchedulerSettings, job: ScheduledJob, queue: string, tags: string[]): V1Job {
    const worker = settings.queues[queue];
    if (worker === undefined) throw new Error(`queue ${JSON.stringify(queue)} is not served by this stack`);
    const name = jobName(settings.jobPrefix, job.uuid);

    const labels = {
        ...worker.labels,
        ...compact({
            [LABELS.managedBy]: "scaledkite",
            [LABELS.component]: "buildkite-worker",
            [LABELS.jobUuid]: job.uuid,
            [LABELS.queue]: labelValue(queue),
            [LABELS.pipeline]: labelValue(job.pipeline.slug),
            [LABELS.buildNumber]: job.build.number === undefined ? undefined : String(job.build.number),
            [LABELS.organization]: labelValue(job.organization.slug),
            [FARGATE_LABEL]: worker.fargate ? labelValue(queue) : undefined,
        }),
    };
    const annotations = {
        ...worker.annotations,
        ...compact({
            "buildkite.com/job-url": jobUrl(job),
            "buildkite.com/job-label": job.label?.slice(0, 1024),
            "buildkite.com/step-key": job.stepKey,
            "buildkite.com/build-uuid": job.build.uuid,
            "buildkite.com/build-branch": job.build.branch,
            "buildkite.com/build-commit": job.build.commit,
            "buildkite.com/pipeline-uuid": job.pipeline.uuid,
            "scaledkite.io/queue": queue,
        }),
    };
    const podAnnotations = { ...annotations, ...DO_NOT_DISRUPT };

    const volumes: V1Volume[] = [{ name: "build", emptyDir: {} }, { name: "scaledkite", emptyDir: {} }];
    const agentMounts: V1VolumeMount[] = [{ name: "build", mountPath: BUILD_PATH }, { name: "scaledkite", mountPath: LAUNCHER_PATH }];
    if (worker.dind) {
        volumes.push({ name: "docker", emptyDir: {} }, { name: "docker-socket", emptyDir: {} });
        agentMounts.push({ name: "docker-socket", mountPath: DOCKER_SOCKET_DIR });
    }
    if (settings.secrets.gitCredentials) {
        volumes.push({ name: "secrets", secret: { secretName: SECRET_NAMES.gitCredentials, defaultMode: 0o400 } });
        agentMounts.push({ name: "secrets", mountPath: SECRETS_PATH, readOnly: true });
    }
    if (settings.secrets.gitSsh) {
        volumes.push({ name: "ssh", secret: { secretName: SECRET_NAMES.gitSsh, defaultMode: 0o400 } });
        agentMounts.push({ name: "ssh", mountPath: SSH_PATH, readOnly: true });
    }
    if (settings.secrets.hooks) {
        volumes.push({ name: "hooks", configMap: { name: HOOKS_CONFIGMAP, defaultMode: 0o755 } });
        agentMounts.push({ name: "hooks", mountPath: HOOKS_PATH, readOnly: true });
    }
    if (settings.secrets.ecr) {
        volumes.push({ name: "scaledkite-hooks", configMap: { name: ECR_HOOKS_CONFIGMAP, defaultMode: 0o755 } });
        agentMounts.push({ name: "scaledkite-hooks", mountPath: SCALEDKITE_HOOKS_PATH, readOnly: true });
    }
    const envFrom = [...(settings.secrets.env ? [{ secretRef: { name: SECRET_NAMES.env } }] : []), ...worker.envFrom];

    const agent: V1Container = {
        name: AGENT_CONTAINER,
        image: worker.image,
        command: ["/bin/sh", "-c", LAUNCHER_SCRIPT, "scaledkite-agent"],
        args: ["start"],
        env: agentEnv(settings, worker, job, tags),
        ...(envFrom.length ? { envFrom } : {}),
        securityContext: { privileged: false, allowPrivilegeEscalation: false },
        resources: worker.resources.agent,
        volumeMounts: agentMounts,
    };

    return {
        apiVersion: "batch/v1",
        kind: "Job",
        metadata: { name, namespace: settings.namespace, labels, annotations },
        spec: {
            backoffLimit: worker.backoffLimit,
            activeDeadlineSeconds: worker.activeDeadlineSeconds,
            ttlSecondsAfterFinished: worker.ttlSecondsAfterFinished,
            podFailurePolicy: {
                rules: [
                    // The job was taken or cancelled: another pod would fail the same way.
                    { action: "FailJob", onExitCodes: { containerName: AGENT_CONTAINER, operator: "In", values: [AGENT_EXIT_CANNOT_ACQUIRE] } },
                    // The agent could not acquire the job and exited without running it (locked too
                    // long, API unreachable): a new worker may, so count it against backoffLimit.
                    { action: "Count", onExitCodes: { containerName: AGENT_CONTAINER, operator: "In", values: [AGENT_EXIT_NOT_RUN] } },
                    // A node drained or preempted before the job ran: retry without counting it.
                    { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
                ],
            },
            template: {
                metadata: { labels, annotations: podAnnotations },
                spec: podSpec(settings, worker, agent, volumes),
            },
        },
    };
}
