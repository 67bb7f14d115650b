/**
 * How the agent container runs buildkite-agent: a small POSIX sh launcher in the container's
 * command, in front of the image's own entrypoint. Pure data; built into the Job by manifest.ts.
 *
 * It fixes two things the stock agent does not do for a one-job pod (read in the sources of
 * github.com/buildkite/agent/v3@v3.138.3):
 *
 * - Shutdown cancels the job. On SIGTERM the agent stops *gracefully*, which means waiting for the
 *   running job (clicommand/agent_start.go, poolSignals.handleLoop: the first SIGTERM calls
 *   StopGracefully; a second SIGTERM (or SIGQUIT) calls StopUngracefully, which cancels the job,
 *   uploads its last logs, finishes it and disconnects within cancel-grace-period + 1 s). When
 *   Kubernetes stops the pod (Job deleted, activeDeadlineSeconds, eviction) the launcher passes its
 *   SIGTERM on twice, a second apart (standard signals sent together merge into one; SIGQUIT is no
 *   choice: a POSIX shell starts background commands with SIGQUIT ignored), and the grace periods
 *   are set from the pod's terminationGracePeriodSeconds (agentGracePeriods) so the job is reported
 *   cancelled before the kubelet's SIGKILL. The stock image's entrypoint execs tini, which forwards
 *   each signal to ssh-env-config.sh's `exec "$@"`, that is to buildkite-agent itself.
 * - An acquisition that fails without exit 27 is not a success. Only a rejected acquisition (HTTP
 *   422) exits 27 (agent_start.go); when the retries for 423 (locked), 5xx or the network run out, or
 *   another 4xx comes back, agent/agent_worker.go logs "Failed to acquire and run job" and the agent
 *   exits 0 without having run the job. The launcher sets the agent's bootstrap-script
 *   (BUILDKITE_BOOTSTRAP_SCRIPT_PATH, which the agent runs for each job it runs: agent/job_runner.go)
 *   to a script that marks the job as started and then execs the real bootstrap (or the one the
 *   user set); an exit 0 without that mark becomes AGENT_EXIT_NOT_RUN, so the pod fails and the Job
 *   controller gives the job a new worker (up to backoffLimit).
 */

/** Where the launcher keeps its bootstrap script and the job-started mark (an emptyDir of its own). */
export const LAUNCHER_PATH = "/buildkite/scaledkite";
/** The exit code of a worker whose agent exited 0 without running its job. */
export const AGENT_EXIT_NOT_RUN = 28;

/** The agent's cancel and signal grace periods for a pod that gets `terminationGracePeriodSeconds`. */
export function agentGracePeriods(terminationGracePeriodSeconds: number): { cancelSeconds: number; signalSeconds: number } {
    // The agent exits at most cancel + 1 s after the signal; keep 4 s more for the kubelet's SIGKILL.
    const cancelSeconds = Math.max(2, terminationGracePeriodSeconds - 5);
    // The job's processes get SIGTERM, then SIGKILL after signalSeconds; what is left of the cancel
    // grace uploads the last log chunks and finishes the job (the agent requires signal < cancel).
    const signalSeconds = Math.max(1, cancelSeconds - Math.min(5, Math.ceil(cancelSeconds / 2)));
    return { cancelSeconds, signalSeconds };
}

/**
 * The launcher script, run as `sh -c SCRIPT scaledkite-agent start`. It starts the image's
 * entrypoint (or buildkite-agent when the image has none) with the container's arguments.
 */
export const LAUNCHER_SCRIPT = [
    "set -u",
    `run=${LAUNCHER_PATH}`,
    "mkdir -p \"$run\" && rm -f \"$run/job-started\"",
    "printf '#!/bin/sh\\n: > %s/job-started\\nexec %s\\n' \"$run\" \"${BUILDKITE_BOOTSTRAP_SCRIPT_PATH:-buildkite-agent bootstrap}\" > \"$run/bootstrap\" && chmod 0755 \"$run/bootstrap\"",
    "export BUILDKITE_BOOTSTRAP_SCRIPT_PATH=\"$run/bootstrap\"",
    // tini in the stock entrypoint is then not PID 1: as a subreaper it still reaps the build's orphans.
    "export TINI_SUBREAPER=1",
    "if command -v buildkite-agent-entrypoint >/dev/null 2>&1; then set -- buildkite-agent-entrypoint \"$@\"; else set -- buildkite-agent \"$@\"; fi",
    "\"$@\" & agent=$!",
    "stop() { echo \"scaledkite: the pod is stopping: cancelling the job (grace ${BUILDKITE_CANCEL_GRACE_PERIOD:-10}s)\" >&2; kill -TERM \"$agent\" 2>/dev/null; sleep 1; kill -TERM \"$agent\" 2>/dev/null; }",
    "trap stop TERM INT",
    "while :; do wait \"$agent\"; rc=$?; kill -0 \"$agent\" 2>/dev/null || break; done",
    `if [ "$rc" -eq 0 ] && [ ! -e "$run/job-started" ]; then`,
    `  echo "scaledkite: buildkite-agent exited without running job \${BUILDKITE_AGENT_ACQUIRE_JOB:-?} (its acquire errors are above); exiting ${AGENT_EXIT_NOT_RUN} so Kubernetes gives the job a new worker" >&2`,
    `  exit ${AGENT_EXIT_NOT_RUN}`,
    "fi",
    "exit \"$rc\"",
].join("\n");

/**
 * git's credential helper for the read-only credentials Secret: it answers `get` from the file and
 * does nothing for `store` and `erase` (`credential.helper store` tries to write after every fetch
 * and prints "fatal: unable to get credential storage lock" on a read-only mount).
 */
export function readOnlyCredentialHelper(file: string): string {
    return `!f() { if [ "$1" = get ]; then git credential-store --file=${file} get; fi; }; f`;
}
