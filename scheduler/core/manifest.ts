/**
 * The worker Job: one pure function from (settings, job) to the Kubernetes manifest.
 *
 * The pod runs the stock buildkite-agent image twice, in the agent's own Kubernetes mode
 * (agentLauncher.ts): the `agent` container holds the registration token, runs `start` with
 * BUILDKITE_AGENT_ACQUIRE_JOB and --kubernetes-exec, so it acquires exactly that one Buildkite job;
 * the `command` container runs its checkout, hooks and command with only the job's own access token,
 * received over a unix socket in a volume the two share. A small launcher in front of the agent
 * cancels the job when the pod is stopped and fails the pod when the agent exits without running the
 * job. Docker-in-docker is a native sidecar (an init container with restartPolicy Always):
 * Kubernetes stops it once the other containers exit, so the pod completes with no hook or kubectl.
 * dockerd listens only on a unix socket in a volume shared with the command container: no TCP port.
 * Only the sidecar is privileged.
 */
import type { V1Container, V1EnvVar, V1Job, V1PodSpec, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import {
    AGENT_EXIT_NOT_RUN,
    AGENT_HOOKS_PATH,
    agentGracePeriods,
    COMMAND_SCRIPT,
    JOB_CONTEXT_PATH,
    LAUNCHER_PATH,
    LAUNCHER_SCRIPT,
    readOnlyCredentialHelper,
} from "./agentLauncher";
import { jobUrl, type ScheduledJob } from "./event";
import { queueSettings, type SchedulerSettings, type WorkerSettings } from "./settings";
import { strategicMerge } from "./strategicMerge";
import {
    AGENT_CONTAINER,
    AGENT_TOKEN_KEY,
    AGENT_TOKEN_VOLUME,
    COMMAND_CONTAINER,
    DIND_CONTAINER,
    DO_NOT_DISRUPT,
    ECR_HOOKS_CONFIGMAP,
    FARGATE_LABEL,
    GIT_CREDENTIALS_KEY,
    GIT_KNOWN_HOSTS_KEY,
    GIT_SSH_KEY,
    HOOKS_CONFIGMAP,
    LABELS,
    QUEUE_ANNOTATION,
    RUNNABLE_AT_ANNOTATION,
    SECRET_NAMES,
    WORKER_SERVICE_ACCOUNT,
} from "./names";

/** The agent exits with this code when it cannot acquire the job (taken, cancelled): never retry it. */
export const AGENT_EXIT_CANNOT_ACQUIRE = 27;
const BUILD_PATH = "/buildkite/builds";
const SECRETS_PATH = "/buildkite/secrets";
const SSH_PATH = "/buildkite/ssh";
const HOOKS_PATH = "/buildkite/hooks";
/** Where the agent container, and only it, mounts the agent token Secret. */
export const AGENT_TOKEN_DIR = "/buildkite/agent-token";
/**
 * The agent's token setting: a `file://` reference to the mounted Secret, which buildkite-agent
 * (>= MIN_AGENT_VERSION) resolves to the file's contents when it registers.
 */
export const AGENT_TOKEN_REFERENCE = `file://${AGENT_TOKEN_DIR}/${AGENT_TOKEN_KEY}`;
/**
 * The agent container's mounts, [volume, path], and no others (the admission policy pins them): the
 * shared job context, its own hooks volume, and the token. Another mount could put a volume the build
 * writes where the agent looks for its hooks (agent-startup, agent-shutdown run in the agent's process).
 */
export const AGENT_MOUNTS: readonly [string, string][] = [
    ["workspace", JOB_CONTEXT_PATH],
    ["scaledkite", LAUNCHER_PATH],
    [AGENT_TOKEN_VOLUME, AGENT_TOKEN_DIR],
];
/** Scaledkite's own agent hooks (the ECR login), beside the user's: the agent runs both. */
export const SCALEDKITE_HOOKS_PATH = "/buildkite/scaledkite-hooks";

/** dockerd's socket, in a volume shared by the dind sidecar and the agent container. */
const DOCKER_SOCKET_DIR = "/var/run/dind";
export const DOCKER_HOST = `unix://${DOCKER_SOCKET_DIR}/docker.sock`;

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

function compact<T extends Record<string, string | undefined>>(obj: T): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(obj)) if (v !== undefined && v !== "") out[k] = v;
    return out;
}

/** The agent container's command and arguments: the launcher in front of the image's entrypoint. */
export const AGENT_COMMAND: readonly string[] = ["/bin/sh", "-c", LAUNCHER_SCRIPT, "scaledkite-agent"];
export const AGENT_ARGS: readonly string[] = ["start"];

/**
 * The agent container's variables whose value is always the same (the admission policy pins them):
 * where builds go, one job and one command container, and the job's hooks paths (any of the three
 * lists Scaledkite writes: the user's ConfigMap, then Scaledkite's own ECR login; the agent passes
 * them to the command container, where they are mounted).
 */
export const AGENT_FIXED_ENV: readonly [string, string][] = [
    ["BUILDKITE_BUILD_PATH", BUILD_PATH],
    ["BUILDKITE_AGENT_DISCONNECT_AFTER_JOB", "true"],
    ["BUILDKITE_CONTAINER_COUNT", "1"],
    ...[[HOOKS_PATH], [SCALEDKITE_HOOKS_PATH], [HOOKS_PATH, SCALEDKITE_HOOKS_PATH]].map((paths): [string, string] => [
        "BUILDKITE_ADDITIONAL_HOOKS_PATHS",
        paths.join(","),
    ]),
];
/** The agent container's variables whose value depends on the job or the queue (none of them runs code). */
export const AGENT_DYNAMIC_ENV: readonly string[] = [
    "BUILDKITE_AGENT_ACQUIRE_JOB",
    "BUILDKITE_AGENT_TAGS",
    "BUILDKITE_AGENT_NAME",
    "BUILDKITE_CANCEL_GRACE_PERIOD",
    "BUILDKITE_SIGNAL_GRACE_PERIOD_SECONDS",
];

/** The agent container's environment: the token and the agent's own settings. */
function agentEnv(settings: SchedulerSettings, worker: WorkerSettings, job: ScheduledJob, tags: string[]): V1EnvVar[] {
    const hookPaths = [
        ...(settings.secrets.hooks ? [HOOKS_PATH] : []),
        ...(settings.secrets.ecr ? [SCALEDKITE_HOOKS_PATH] : []),
    ];
    const fixed = (name: string) => ({ name, value: AGENT_FIXED_ENV.find(([n]) => n === name)![1] });
    return [
        // A path, not the token: the agent reads the file itself, so no process of the pod (the
        // launcher, tini, the agent before it re-execs) and no container config holds the token.
        { name: "BUILDKITE_AGENT_TOKEN", value: AGENT_TOKEN_REFERENCE },
        { name: "BUILDKITE_AGENT_ACQUIRE_JOB", value: job.uuid },
        { name: "BUILDKITE_AGENT_TAGS", value: [...tags, ...worker.agentTags].join(",") },
        { name: "BUILDKITE_AGENT_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
        fixed("BUILDKITE_BUILD_PATH"),
        fixed("BUILDKITE_AGENT_DISCONNECT_AFTER_JOB"),
        // The job runs in the command container, which connects to the agent's socket.
        { name: "BUILDKITE_KUBERNETES_EXEC", value: "true" },
        fixed("BUILDKITE_CONTAINER_COUNT"),
        // Only the launcher's pre-bootstrap hook, on a volume the command container does not mount.
        { name: "BUILDKITE_HOOKS_PATH", value: AGENT_HOOKS_PATH },
        ...(hookPaths.length ? [{ name: "BUILDKITE_ADDITIONAL_HOOKS_PATHS", value: hookPaths.join(",") }] : []),
        ...gracePeriodEnv(worker),
        ...plainEnv(worker),
    ];
}

/** The command container's environment: what the checkout and the build's tools need. */
function commandEnv(settings: SchedulerSettings, worker: WorkerSettings): V1EnvVar[] {
    const env: V1EnvVar[] = [
        { name: "BUILDKITE_CONTAINER_ID", value: "0" },
        // The agent may take minutes to acquire a locked job; the wrapper stops sooner if it gives up.
        { name: "BUILDKITE_KUBERNETES_BOOTSTRAP_CONNECTION_TIMEOUT", value: `${worker.activeDeadlineSeconds}s` },
    ];
    if (worker.dind !== "none") env.push({ name: "DOCKER_HOST", value: DOCKER_HOST });
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
    // The login's messages name the service account that should carry the role.
    if (settings.secrets.ecr)
        env.push({
            name: "SCALEDKITE_SERVICE_ACCOUNT",
            valueFrom: { fieldRef: { fieldPath: "spec.serviceAccountName" } },
        });
    return [...env, ...plainEnv(worker)];
}

/** The queue's plain variables: both containers (the agent reads its settings from them too). */
function plainEnv(worker: WorkerSettings): V1EnvVar[] {
    return Object.entries(worker.env).map(([name, value]) => ({ name, value }));
}

/** The agent cancels its job within the pod's termination grace (see agentLauncher.ts). */
function gracePeriodEnv(worker: WorkerSettings): V1EnvVar[] {
    const { cancelSeconds, signalSeconds } = agentGracePeriods(worker.terminationGracePeriodSeconds);
    return [
        { name: "BUILDKITE_CANCEL_GRACE_PERIOD", value: String(cancelSeconds) },
        { name: "BUILDKITE_SIGNAL_GRACE_PERIOD_SECONDS", value: String(signalSeconds) },
    ];
}

/** The dind sidecar's arguments (see dindSidecar): the only privileged container runs exactly these. */
export const DIND_ARGS: readonly string[] = ["dockerd", `--host=${DOCKER_HOST}`];

/** The rootless sidecar's user: `rootless`, uid and gid 1000, in the stock docker:dind-rootless image. */
export const ROOTLESS_DIND_USER = 1000;
/**
 * The parent of dockerd's rootless data root ($HOME/.local/share/docker, the stock image's VOLUME).
 * The emptyDir goes one level up: it is root's and world-writable, so dockerd (uid 1000) makes the
 * data root itself and may chmod it; mounted at the data root, dockerd's chmod fails (measured).
 */
const ROOTLESS_DATA_PARENT = "/home/rootless/.local/share";

/** How long the dind sidecar's postStart hook waits for dockerd before the kubelet restarts the sidecar. */
export const DIND_READY_TIMEOUT_SECONDS = 120;

/** The postStart hook: exit 0 once dockerd answers on its socket, 1 after DIND_READY_TIMEOUT_SECONDS. */
export function dindReadyScript(): string {
    const tries = DIND_READY_TIMEOUT_SECONDS * 20;
    return `i=0; until docker --host=${DOCKER_HOST} version --format '{{.Server.Version}}' >/dev/null 2>&1; do i=$((i+1)); [ "$i" -lt ${tries} ] || exit 1; sleep 0.05; done`;
}

function dindSidecar(worker: WorkerSettings): V1Container {
    const rootless = worker.dind === "rootless";
    return {
        name: DIND_CONTAINER,
        image: worker.dindImage,
        restartPolicy: "Always",
        // dockerd needs a privileged container; it is the only one in the pod. Rootless, dockerd runs
        // as uid 1000 inside rootlesskit's user namespace: stock docker:dind-rootless still needs the
        // privileged container (without it, runc inside cannot mount /proc for a build's containers
        // under the runtime's masked /proc; measured on the real node, test/integration/realNode), but
        // a build that takes over dockerd is root only in that namespace, not on the node.
        securityContext: rootless
            ? { privileged: true, runAsUser: ROOTLESS_DIND_USER, runAsGroup: ROOTLESS_DIND_USER, runAsNonRoot: true }
            : { privileged: true },
        // Arguments that start with `dockerd` pass through the docker:dind entrypoint unchanged (as
        // uid 1000, into `rootlesskit … dockerd`); a first argument starting with "-" would make it add
        // its defaults, among them --host=tcp://0.0.0.0:2375 (docker-library/docker, 28.5.2,
        // dockerd-entrypoint.sh).
        args: [...DIND_ARGS],
        // The agent starts once dockerd answers on its socket (not merely when a file exists). A
        // postStart hook waits for it in 50 ms steps: the kubelet runs the hook inside the container's
        // start (kubernetes v1.34.4, pkg/kubelet/kuberuntime/kuberuntime_container.go, startContainer
        // "Step 4"), and a sidecar without a startup probe counts as started once it runs
        // (computeInitContainerActions), so the next container starts on the kubelet's next sync. A
        // startup probe instead is only run once per period (at least 1 s), on a tick unrelated to
        // dockerd: measured on the real node over 20 jobs, the hook cut event → job started from
        // p50 2,083 / p99 2,422 ms to p50 1,969 / p99 2,112 ms. If dockerd never answers, the hook
        // fails after DIND_READY_TIMEOUT_SECONDS and the kubelet restarts the sidecar, as a failed probe did.
        lifecycle: { postStart: { exec: { command: ["sh", "-c", dindReadyScript()] } } },
        resources: worker.resources.dind,
        volumeMounts: [
            { name: "build", mountPath: BUILD_PATH },
            { name: "docker", mountPath: rootless ? ROOTLESS_DATA_PARENT : "/var/lib/docker" },
            { name: "docker-socket", mountPath: DOCKER_SOCKET_DIR },
        ],
    };
}

function podSpec(
    settings: SchedulerSettings,
    worker: WorkerSettings,
    containers: V1Container[],
    volumes: V1Volume[],
): V1PodSpec {
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
        ...(worker.dind !== "none" ? { initContainers: [dindSidecar(worker)] } : {}),
        containers,
        volumes,
    };
    return worker.podSpecPatch
        ? (strategicMerge(spec as unknown as Record<string, unknown>, worker.podSpecPatch) as unknown as V1PodSpec)
        : spec;
}

/**
 * Builds the worker Job for `job` on `queue` (a key of settings.queues) with the agent tags from
 * queue matching.
 */
export function buildJobManifest(settings: SchedulerSettings, job: ScheduledJob, queue: string, tags: string[]): V1Job {
    const worker = queueSettings(settings, queue);
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
            "buildkite.com/job-url": annotationValue(jobUrl(job)),
            "buildkite.com/job-label": annotationValue(job.label),
            "buildkite.com/step-key": annotationValue(job.stepKey),
            "buildkite.com/build-uuid": annotationValue(job.build.uuid),
            "buildkite.com/build-branch": annotationValue(job.build.branch),
            "buildkite.com/build-commit": annotationValue(job.build.commit),
            "buildkite.com/pipeline-uuid": annotationValue(job.pipeline.uuid),
            [QUEUE_ANNOTATION]: queue,
            // When the job became runnable: the sweep measures start latency from it.
            [RUNNABLE_AT_ANNOTATION]: job.runnableAt,
        }),
    };
    const podAnnotations = { ...annotations, ...DO_NOT_DISRUPT };

    // `workspace` (the agent's socket and env files) is shared; `scaledkite` (the agent's hooks) and
    // the token are the agent's own; the build directory, dockerd's socket and the git and hook files are the command's.
    const volumes: V1Volume[] = [
        { name: "workspace", emptyDir: {} },
        { name: "scaledkite", emptyDir: {} },
        { name: "build", emptyDir: {} },
        {
            name: AGENT_TOKEN_VOLUME,
            secret: {
                secretName: SECRET_NAMES.agentToken,
                items: [{ key: AGENT_TOKEN_KEY, path: AGENT_TOKEN_KEY }],
                defaultMode: 0o400,
            },
        },
    ];
    const agentMounts: V1VolumeMount[] = AGENT_MOUNTS.map(([name, mountPath]) => ({
        name,
        mountPath,
        ...(name === AGENT_TOKEN_VOLUME ? { readOnly: true } : {}),
    }));
    const commandMounts: V1VolumeMount[] = [
        { name: "workspace", mountPath: JOB_CONTEXT_PATH },
        { name: "build", mountPath: BUILD_PATH },
    ];
    if (worker.dind !== "none") {
        volumes.push({ name: "docker", emptyDir: {} }, { name: "docker-socket", emptyDir: {} });
        commandMounts.push({ name: "docker-socket", mountPath: DOCKER_SOCKET_DIR });
    }
    if (settings.secrets.gitCredentials) {
        volumes.push({ name: "secrets", secret: { secretName: SECRET_NAMES.gitCredentials, defaultMode: 0o400 } });
        commandMounts.push({ name: "secrets", mountPath: SECRETS_PATH, readOnly: true });
    }
    if (settings.secrets.gitSsh) {
        volumes.push({ name: "ssh", secret: { secretName: SECRET_NAMES.gitSsh, defaultMode: 0o400 } });
        commandMounts.push({ name: "ssh", mountPath: SSH_PATH, readOnly: true });
    }
    if (settings.secrets.hooks) {
        volumes.push({ name: "hooks", configMap: { name: HOOKS_CONFIGMAP, defaultMode: 0o755 } });
        commandMounts.push({ name: "hooks", mountPath: HOOKS_PATH, readOnly: true });
    }
    if (settings.secrets.ecr) {
        volumes.push({ name: "scaledkite-hooks", configMap: { name: ECR_HOOKS_CONFIGMAP, defaultMode: 0o755 } });
        commandMounts.push({ name: "scaledkite-hooks", mountPath: SCALEDKITE_HOOKS_PATH, readOnly: true });
    }
    const envFrom = [...(settings.secrets.env ? [{ secretRef: { name: SECRET_NAMES.env } }] : []), ...worker.envFrom];
    const unprivileged = { privileged: false, allowPrivilegeEscalation: false };

    const agent: V1Container = {
        name: AGENT_CONTAINER,
        image: worker.image,
        command: [...AGENT_COMMAND],
        args: [...AGENT_ARGS],
        env: agentEnv(settings, worker, job, tags),
        ...(envFrom.length ? { envFrom } : {}),
        securityContext: unprivileged,
        resources: worker.resources.agent,
        volumeMounts: agentMounts,
    };
    const command: V1Container = {
        name: COMMAND_CONTAINER,
        image: worker.image,
        command: ["/bin/sh", "-c", COMMAND_SCRIPT, "scaledkite-command"],
        env: commandEnv(settings, worker),
        ...(envFrom.length ? { envFrom } : {}),
        workingDir: BUILD_PATH,
        securityContext: unprivileged,
        resources: worker.resources.command,
        volumeMounts: commandMounts,
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
                    {
                        action: "FailJob",
                        onExitCodes: {
                            containerName: AGENT_CONTAINER,
                            operator: "In",
                            values: [AGENT_EXIT_CANNOT_ACQUIRE],
                        },
                    },
                    // The agent could not acquire the job and exited without running it (locked too
                    // long, API unreachable): a new worker may, so count it against backoffLimit.
                    {
                        action: "Count",
                        onExitCodes: { containerName: AGENT_CONTAINER, operator: "In", values: [AGENT_EXIT_NOT_RUN] },
                    },
                    // A node drained or preempted before the job ran: retry without counting it.
                    { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
                ],
            },
            template: {
                metadata: { labels, annotations: podAnnotations },
                spec: podSpec(settings, worker, [agent, command], volumes),
            },
        },
    };
}
