/**
 * How a worker pod runs its one Buildkite job, split over two containers so the build never sees the
 * agent's registration token: pure data (POSIX sh scripts), built into the Job by manifest.ts.
 *
 * The agent's own Kubernetes mode (read in github.com/buildkite/agent/v3@v3.138.3, `kubernetes/` and
 * `clicommand/kubernetes_bootstrap.go`):
 *
 * - The `agent` container runs `buildkite-agent start --kubernetes-exec` with the token. It acquires
 *   the job and, instead of running the bootstrap itself, serves a unix socket (`buildkite.sock` in the
 *   job context directory, default `/workspace`, on a volume the containers share) and waits for
 *   BUILDKITE_CONTAINER_COUNT clients (agent/job_runner.go). A client that registers receives the
 *   environment the bootstrap would have had: the agent's process environment plus the job's
 *   (kubernetes/runner.go Register). The registration token is not in it: the agent deletes it from
 *   the job's environment (job_runner.go) and, since v3.138, re-execs itself with the token passed
 *   over a pipe, so its own environment no longer holds it (clicommand/register_token_unix.go).
 * - The `command` container runs `buildkite-agent kubernetes-bootstrap`: it connects to the socket,
 *   takes that environment (with the job's short-lived access token), runs the checkout, hooks and
 *   command, streams the log through the socket, and reports the exit status.
 *
 * The containers have separate process namespaces and filesystems: the build cannot read the agent
 * container's environment, its /proc entries or its files (the token Secret is mounted only there).
 *
 * The launcher (agent side) fixes two things the stock agent does not do for a one-job pod:
 *
 * - Shutdown cancels the job. Under --kubernetes-exec the first SIGTERM already stops the agent
 *   *ungracefully*, that is it cancels the job, uploads the last logs and finishes it within
 *   cancel-grace-period + 1 s; a second signal would make it exit at once, losing the job
 *   (clicommand/agent_start.go, poolSignals: skipGraceful, interruptCount starts at 1). So the
 *   launcher passes the pod's SIGTERM on exactly once, and the grace periods are set from the pod's
 *   terminationGracePeriodSeconds (agentGracePeriods) so the job is reported before the kubelet's
 *   SIGKILL. The stock image's entrypoint execs tini, which forwards the signal to buildkite-agent.
 * - An acquisition that fails without exit 27 is not a success. Only a rejected acquisition (HTTP
 *   422) exits 27 (agent_start.go); when the retries for 423 (locked), 5xx or the network run out, or
 *   another 4xx comes back, agent/agent_worker.go logs "Failed to acquire and run job" and the agent
 *   exits 0 without having run the job. The agent runs its `pre-bootstrap` hook (from its hooks path
 *   only) for every job it runs, before the job starts (agent/run_job.go); the launcher's hook marks
 *   the job as started, and an exit 0 without that mark becomes AGENT_EXIT_NOT_RUN, so the pod fails
 *   and the Job controller gives the job a new worker (up to backoffLimit). That hooks directory is
 *   on a volume only the agent container mounts: the build cannot plant an agent hook there.
 *
 * The command container's wrapper ends when the bootstrap ends, or soon after the agent exits (an
 * agent that ran nothing leaves its client waiting to connect), and always exits 0: the job's result
 * goes to Buildkite through the agent, and the pod's outcome is the agent container's exit code.
 */

/** The agent container's own directory (an emptyDir only it mounts): its pre-bootstrap hook and the job-started mark. */
export const LAUNCHER_PATH = "/buildkite/scaledkite";
/** The agent's hooks path: only the launcher's pre-bootstrap hook is there. */
export const AGENT_HOOKS_PATH = `${LAUNCHER_PATH}/hooks`;
/** The job context directory shared by the agent and command containers (the agent's default). */
export const JOB_CONTEXT_PATH = "/workspace";
/** Written by the launcher when the agent exits: the command container's wrapper stops waiting. */
export const AGENT_EXITED_MARK = `${JOB_CONTEXT_PATH}/scaledkite-agent-exited`;
/** The agent exits with this code when it cannot acquire the job (taken, cancelled): never retry it (buildkite/agent agent_start.go). */
export const AGENT_EXIT_CANNOT_ACQUIRE = 27;
/** The exit code of a worker whose agent exited 0 without running its job. */
export const AGENT_EXIT_NOT_RUN = 28;
/** How long a command container waits for dockerd before its bootstrap runs the step without it. */
export const DIND_READY_TIMEOUT_SECONDS = 120;
/** Seconds the command container waits for its bootstrap after the agent has exited. */
export const COMMAND_AFTER_AGENT_SECONDS = 10;

/** The agent's cancel and signal grace periods for a pod that gets `terminationGracePeriodSeconds`. */
export function agentGracePeriods(terminationGracePeriodSeconds: number): {
    cancelSeconds: number;
    signalSeconds: number;
} {
    // The agent exits at most cancel + 1 s after the signal; keep 4 s more for the kubelet's SIGKILL.
    const cancelSeconds = Math.max(2, terminationGracePeriodSeconds - 5);
    // The job's processes get SIGTERM, then SIGKILL after signalSeconds; what is left of the cancel
    // grace uploads the last log chunks and finishes the job (the agent requires signal < cancel).
    const signalSeconds = Math.max(1, cancelSeconds - Math.min(5, Math.ceil(cancelSeconds / 2)));
    return { cancelSeconds, signalSeconds };
}

/** A POSIX sh script: `set -u`, then each variable assigned (values without spaces), then the lines. Pure. */
export function shScript(vars: Record<string, string>, lines: string[]): string {
    return ["set -u", ...Object.entries(vars).map(([name, value]) => `${name}=${value}`), ...lines].join("\n");
}

/**
 * The agent container's launcher, run as `sh -c SCRIPT scaledkite-agent start`. It starts the image's
 * entrypoint (or buildkite-agent when the image has none) with the container's arguments.
 */
export const LAUNCHER_SCRIPT = shScript({ run: LAUNCHER_PATH, hooks: AGENT_HOOKS_PATH, exited: AGENT_EXITED_MARK }, [
    'mkdir -p "$run" "$hooks" && rm -f "$run/job-started" "$exited"',
    'printf \'#!/bin/sh\\n: > %s/job-started\\n\' "$run" > "$hooks/pre-bootstrap" && chmod 0755 "$hooks/pre-bootstrap"',
    // tini in the stock entrypoint is then not PID 1: as a subreaper it still reaps orphans.
    "export TINI_SUBREAPER=1",
    'if command -v buildkite-agent-entrypoint >/dev/null 2>&1; then set -- buildkite-agent-entrypoint "$@"; else set -- buildkite-agent "$@"; fi',
    '"$@" & agent=$!',
    'stop() { echo "scaledkite: the pod is stopping: cancelling the job (grace ${BUILDKITE_CANCEL_GRACE_PERIOD:-10}s)" >&2; kill -TERM "$agent" 2>/dev/null; }',
    "trap stop TERM INT",
    'while :; do wait "$agent"; rc=$?; kill -0 "$agent" 2>/dev/null || break; done',
    `if [ "$rc" -eq 0 ] && [ ! -e "$run/job-started" ]; then`,
    `  echo "scaledkite: buildkite-agent exited without running job \${BUILDKITE_AGENT_ACQUIRE_JOB:-?} (its acquire errors are above); exiting ${AGENT_EXIT_NOT_RUN} so Kubernetes gives the job a new worker" >&2`,
    `  rc=${AGENT_EXIT_NOT_RUN}`,
    "fi",
    'echo "$rc" > "$exited" 2>/dev/null',
    'exit "$rc"',
]);

/**
 * The command container's wrapper, run as `sh -c SCRIPT scaledkite-command`.
 *
 * It waits until the agent has a job: the agent's socket appears in the job context directory once
 * the job is running, after the agent wrote the job's environment there as JSON (agent/job_runner.go,
 * createJobEnvFiles: `job-env-json-<job id>…`). kubernetes-bootstrap takes BUILDKITE_COMMAND from its
 * own container, never from the agent (clicommand/kubernetes_bootstrap.go, existingEnvPriority:
 * agent-stack-k8s puts the step's command in the pod spec), so the wrapper passes the job's command
 * on from that file (read with jq, which the stock image has). Then it runs `buildkite-agent
 * kubernetes-bootstrap` (under tini as a subreaper when the image has it) until it ends, or until
 * COMMAND_AFTER_AGENT_SECONDS after the agent exited. An agent that exits without a job ends the wait.
 * It exits 0 (see the top of this file).
 */
export const COMMAND_SCRIPT = commandScript("buildkite-agent", true);

/** Where a step's containers find buildkite-agent: copied there by the `copy-agent` init container (any image may run a step). */
export const STEP_AGENT_BINARY = `${JOB_CONTEXT_PATH}/bin/buildkite-agent`;

/**
 * The wrapper of a step's own containers (its `image:` or the `kubernetes` plugin's podSpec): the
 * agent binary copied into the shared volume, and the command in the container's own
 * BUILDKITE_COMMAND (set from the job when the Job is made), so the image needs only a POSIX sh.
 */
export const STEP_COMMAND_SCRIPT = commandScript(STEP_AGENT_BINARY, false);

/** The command containers' wrapper around `<agent> kubernetes-bootstrap`. Pure. */
function commandScript(agent: string, commandFromJob: boolean): string {
    return shScript({ ctx: JOB_CONTEXT_PATH, exited: AGENT_EXITED_MARK }, [
        'while [ ! -S "$ctx/buildkite.sock" ]; do',
        '  if [ -e "$exited" ]; then echo "scaledkite: the agent exited ($(cat "$exited" 2>/dev/null)) without starting a job here; nothing to run" >&2; exit 0; fi',
        "  sleep 0.2",
        "done",
        ...(commandFromJob
            ? [
                  'for f in "$ctx"/job-env-json-*; do',
                  '  [ -f "$f" ] || continue',
                  '  if ! command -v jq >/dev/null 2>&1; then echo "scaledkite: this image has no jq, so the step\'s command cannot be passed on (use an image with sh, jq and buildkite-agent, like the stock one)" >&2; break; fi',
                  '  cmd=$(jq -r \'.BUILDKITE_COMMAND // empty\' "$f") && [ -n "$cmd" ] && export BUILDKITE_COMMAND="$cmd"',
                  "  break",
                  "done",
              ]
            : []),
        // dockerd (the dind sidecar) boots while the agent acquires the job; only the step needs it.
        // A socket that exists and, where the image has the docker CLI, a daemon that answers.
        'case "${DOCKER_HOST:-}" in unix://*)',
        "  sock=${DOCKER_HOST#unix://}; i=0",
        '  until [ -S "$sock" ] && { ! command -v docker >/dev/null 2>&1 || docker version >/dev/null 2>&1; }; do',
        `    i=$((i+1)); if [ "$i" -gt ${DIND_READY_TIMEOUT_SECONDS * 20} ]; then echo "scaledkite: dockerd (the dind sidecar) did not answer on $sock within ${DIND_READY_TIMEOUT_SECONDS} s: the step runs without it" >&2; break; fi`,
        "    sleep 0.05",
        "  done;;",
        "esac",
        `set -- ${agent} kubernetes-bootstrap`,
        'if command -v tini >/dev/null 2>&1; then set -- tini -s -- "$@"; fi',
        '"$@" & boot=$!',
        // PID 1 ignores signals it has no handler for; the bootstrap learns of a stop from the agent.
        "trap 'echo \"scaledkite: the pod is stopping: the agent cancels the job\" >&2' TERM INT",
        "left=-1",
        'while kill -0 "$boot" 2>/dev/null; do',
        `  if [ "$left" -lt 0 ] && [ -e "$exited" ]; then left=${COMMAND_AFTER_AGENT_SECONDS}; fi`,
        '  if [ "$left" -eq 0 ]; then',
        '    echo "scaledkite: the agent exited ($(cat "$exited" 2>/dev/null)) and this container\'s bootstrap has not: stopping (the agent container\'s exit code is the pod\'s outcome)" >&2',
        "    exit 0",
        "  fi",
        '  [ "$left" -gt 0 ] && left=$((left - 1))',
        "  sleep 1",
        "done",
        'wait "$boot"; rc=$?',
        "echo \"scaledkite: the job's bootstrap exited $rc; the agent reports the job's result to Buildkite\" >&2",
        "exit 0",
    ]);
}

/**
 * git's credential helper for the read-only credentials Secret: it answers `get` from the file and
 * does nothing for `store` and `erase` (`credential.helper store` tries to write after every fetch
 * and prints "fatal: unable to get credential storage lock" on a read-only mount).
 */
export function readOnlyCredentialHelper(file: string): string {
    return `!f() { if [ "$1" = get ]; then git credential-store --file=${file} get; fi; }; f`;
}

/**
 * The oldest buildkite-agent Scaledkite's pod works with: the first that reads its registration token
 * from a `file://` path (see AGENT_TOKEN_FILE in manifest.ts). An older agent sends the path itself as
 * the token, so its registration fails: it fails closed, with the token in no process's environment.
 */
export const MIN_AGENT_VERSION: readonly number[] = [3, 133, 0];

/**
 * The buildkite-agent version an agent image's tag names (`buildkite/agent:3.138.3`,
 * `…/buildkite-agent:v3.120.0-ubuntu-24.04`), or undefined when its tag names none (`latest`, a
 * digest, another repository). Pure.
 */
export function agentImageVersion(image: string): number[] | undefined {
    const m = /(?:^|\/)(?:buildkite\/agent|buildkite-agent):v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+@][^:]*)?$/.exec(image);
    return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

/** Negative, zero or positive as version `a` is older than, the same as or newer than `b`. Pure. */
export function compareVersions(a: readonly number[], b: readonly number[]): number {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
        const d = (a[i] ?? 0) - (b[i] ?? 0);
        if (d !== 0) return d;
    }
    return 0;
}
