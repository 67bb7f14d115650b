/**
 * The worker pod's containers as Scaledkite renders them apart from the pod: the paths they share,
 * the agent container's command, token reference, mounts and environment (which the admission policy
 * pins), and the command container's environment. Pure.
 */
import type { V1EnvVar } from "@kubernetes/client-node";
import {
    AGENT_HOOKS_PATH,
    agentGracePeriods,
    JOB_CONTEXT_PATH,
    LAUNCHER_PATH,
    LAUNCHER_SCRIPT,
    readOnlyCredentialHelper,
} from "./agentLauncher";
import { type ScheduledJob } from "./event";
import { type SchedulerSettings, type WorkerSettings } from "./settings";
import { DOCKER_HOST } from "./dind";
import { AGENT_TOKEN_KEY, AGENT_TOKEN_VOLUME, GIT_CREDENTIALS_KEY, GIT_KNOWN_HOSTS_KEY, GIT_SSH_KEY } from "./names";

export const BUILD_PATH = "/buildkite/builds";
export const SECRETS_PATH = "/buildkite/secrets";
export const SSH_PATH = "/buildkite/ssh";
export const HOOKS_PATH = "/buildkite/hooks";
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

/** The agent container's command and arguments: the launcher in front of the image's entrypoint. */
export const AGENT_COMMAND: readonly string[] = ["/bin/sh", "-c", LAUNCHER_SCRIPT, "scaledkite-agent"];
export const AGENT_ARGS: readonly string[] = ["start"];

/**
 * The agent container's variables whose value is always the same (the admission policy pins them):
 * where builds go, one job, and the job's hooks paths (any of the three
 * lists Scaledkite writes: the user's ConfigMap, then Scaledkite's own ECR login; the agent passes
 * them to the command container, where they are mounted).
 */
export const AGENT_FIXED_ENV: readonly [string, string][] = [
    ["BUILDKITE_BUILD_PATH", BUILD_PATH],
    ["BUILDKITE_AGENT_DISCONNECT_AFTER_JOB", "true"],
    ...[[HOOKS_PATH], [SCALEDKITE_HOOKS_PATH], [HOOKS_PATH, SCALEDKITE_HOOKS_PATH]].map((paths): [string, string] => [
        "BUILDKITE_ADDITIONAL_HOOKS_PATHS",
        paths.join(","),
    ]),
];
/** The agent container's variables whose value depends on the job or the queue (none of them runs code). */
export const AGENT_DYNAMIC_ENV: readonly string[] = [
    "BUILDKITE_AGENT_ACQUIRE_JOB",
    // How many containers the step has, and its checkout's git settings (stepPod.ts): the agent passes
    // them to the bootstrap containers, which run them; the agent itself runs no git.
    "BUILDKITE_CONTAINER_COUNT",
    "BUILDKITE_GIT_CLONE_FLAGS",
    "BUILDKITE_GIT_FETCH_FLAGS",
    "BUILDKITE_GIT_CHECKOUT_FLAGS",
    "BUILDKITE_GIT_CLEAN_FLAGS",
    "BUILDKITE_NO_GIT_SUBMODULES",
    "BUILDKITE_GIT_SUBMODULE_CLONE_CONFIG",
    "BUILDKITE_AGENT_TAGS",
    "BUILDKITE_AGENT_NAME",
    "BUILDKITE_CANCEL_GRACE_PERIOD",
    "BUILDKITE_SIGNAL_GRACE_PERIOD_SECONDS",
];

/** The agent container's environment: the token and the agent's own settings. */
export function agentEnv(
    settings: SchedulerSettings,
    worker: WorkerSettings,
    job: ScheduledJob,
    tags: string[],
): V1EnvVar[] {
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
        // One command container; a step's own pod has more (stepPod.ts).
        { name: "BUILDKITE_CONTAINER_COUNT", value: "1" },
        // Only the launcher's pre-bootstrap hook, on a volume the command container does not mount.
        { name: "BUILDKITE_HOOKS_PATH", value: AGENT_HOOKS_PATH },
        ...(hookPaths.length ? [{ name: "BUILDKITE_ADDITIONAL_HOOKS_PATHS", value: hookPaths.join(",") }] : []),
        ...gracePeriodEnv(worker),
        ...plainEnv(worker),
    ];
}

/** The command container's environment: what the checkout and the build's tools need. */
export function commandEnv(settings: SchedulerSettings, worker: WorkerSettings): V1EnvVar[] {
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
