/**
 * The worker Job: one pure function from (settings, job) to the Kubernetes manifest.
 *
 * The pod runs the stock buildkite-agent image twice, in the agent's own Kubernetes mode
 * (agentLauncher.ts): the `agent` container holds the registration token, runs `start` with
 * BUILDKITE_AGENT_ACQUIRE_JOB and --kubernetes-exec, so it acquires exactly that one Buildkite job;
 * the `command` container runs its checkout, hooks and command with only the job's own access token,
 * received over a unix socket in a volume the two share. A small launcher in front of the agent
 * cancels the job when the pod is stopped and fails the pod when the agent exits without running the
 * job. Docker-in-docker is a container beside them that starts in the same kubelet pass and stops
 * itself once the agent has exited, so the pod completes with no hook or kubectl (dind.ts). dockerd
 * listens only on a unix socket in a volume shared with the command container: no TCP port. Only
 * the dind container is privileged.
 */
import type { V1Container, V1Job, V1PodSpec, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import { AGENT_EXIT_CANNOT_ACQUIRE, AGENT_EXIT_NOT_RUN, COMMAND_SCRIPT, JOB_CONTEXT_PATH } from "./agentLauncher";
import { DOCKER_SOCKET_DIR, dindContainer } from "./dind";
import { jobUrl, type ScheduledJob } from "./event";
import {
    AGENT_CONTAINER,
    AGENT_TOKEN_KEY,
    AGENT_TOKEN_VOLUME,
    annotationValue,
    COMMAND_CONTAINER,
    DO_NOT_DISRUPT,
    ECR_HOOKS_CONFIGMAP,
    FARGATE_LABEL,
    HOOKS_CONFIGMAP,
    jobName,
    LABELS,
    labelValue,
    QUEUE_ANNOTATION,
    PRIORITY_ANNOTATION,
    RUNNABLE_AT_ANNOTATION,
    SECRET_NAMES,
    WORKER_SERVICE_ACCOUNT,
} from "./names";
import { queueSettings, type SchedulerSettings, type WorkerSettings } from "./settings";
import { priorityClassFor } from "./priorityClasses";
import { strategicMerge } from "./strategicMerge";
import {
    AGENT_ARGS,
    AGENT_COMMAND,
    AGENT_MOUNTS,
    agentEnv,
    BUILD_PATH,
    commandEnv,
    HOOKS_PATH,
    SCALEDKITE_HOOKS_PATH,
    SECRETS_PATH,
    SSH_PATH,
} from "./workerEnv";

function compact<T extends Record<string, string | undefined>>(obj: T): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(obj)) if (v !== undefined && v !== "") out[k] = v;
    return out;
}

/** The pod spec with the job's PriorityClass, which replaces the queue's own (its patch's). Pure. */
function withPriorityClass(spec: V1PodSpec, priorityClassName: string | undefined): V1PodSpec {
    return priorityClassName ? { ...spec, priorityClassName } : spec;
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
        containers: worker.dind !== "none" ? [...containers, dindContainer(worker, BUILD_PATH)] : containers,
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
            [PRIORITY_ANNOTATION]: job.priority === undefined ? undefined : String(job.priority),
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
                spec: withPriorityClass(
                    podSpec(settings, worker, [agent, command], volumes),
                    priorityClassFor(settings.priorityClasses, job.priority),
                ),
            },
        },
    };
}
