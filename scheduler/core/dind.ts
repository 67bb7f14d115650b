/**
 * Docker-in-docker beside the build: a regular container that starts in the same pass of the kubelet
 * as the agent, and stops itself once the agent has exited, so the pod completes with no hook or
 * kubectl. (As a native sidecar, an init container with restartPolicy Always, it held every other
 * container back one pass of the kubelet: kubernetes v1.34.4 `pkg/kubelet/kuberuntime/
 * kuberuntime_container.go`, computeInitContainerActions starts the containers after a sidecar only
 * once a later pass sees it running, and that pass waits for the PLEG's 1 s relist: event → job
 * started p50 1,240 ms with dind against 764 ms without, bench, 20 jobs on the real node.) dockerd
 * listens only on a unix socket in a volume shared with the command container: no TCP port. It is the
 * only privileged container of the pod. Pure.
 */
import type { V1Container } from "@kubernetes/client-node";
import { AGENT_EXITED_MARK, JOB_CONTEXT_PATH, shScript } from "./agentLauncher";
import { DIND_CONTAINER } from "./names";
import type { WorkerSettings } from "./settings";

/** dockerd's socket, in a volume shared by the dind sidecar and the agent container. */
export const DOCKER_SOCKET_DIR = "/var/run/dind";
export const DOCKER_HOST = `unix://${DOCKER_SOCKET_DIR}/docker.sock`;

/** The dind container's arguments (see dindContainer): the only privileged container runs exactly these. */
export const DIND_ARGS: readonly string[] = ["dockerd", `--host=${DOCKER_HOST}`];

/**
 * The dind container's wrapper, run as `sh -c SCRIPT scaledkite-dind dockerd --host=…`: the image's
 * entrypoint with the arguments, stopped (and the container exiting 0) once the agent launcher has
 * written AGENT_EXITED_MARK; a dockerd that exits first exits the container with its status, which
 * the sweep reports (core/stuck.ts). The pod's SIGTERM stops dockerd too.
 */
export const DIND_SCRIPT = shScript({ exited: AGENT_EXITED_MARK }, [
    'dockerd-entrypoint.sh "$@" & dockerd=$!',
    '( while [ ! -e "$exited" ]; do sleep 0.2; done; kill -TERM "$dockerd" 2>/dev/null ) & watcher=$!',
    "trap 'kill -TERM \"$dockerd\" 2>/dev/null' TERM INT",
    'while :; do wait "$dockerd"; rc=$?; kill -0 "$dockerd" 2>/dev/null || break; done',
    'kill "$watcher" 2>/dev/null',
    '[ -e "$exited" ] && exit 0',
    'echo "scaledkite: dockerd exited $rc before the agent did; the build has no docker" >&2',
    'exit "$rc"',
]);
/** The dind container's command: the wrapper (the policy pins it, with DIND_ARGS). */
export const DIND_COMMAND: readonly string[] = ["/bin/sh", "-c", DIND_SCRIPT, "scaledkite-dind"];

/** The rootless sidecar's user: `rootless`, uid and gid 1000, in the stock docker:dind-rootless image. */
export const ROOTLESS_DIND_USER = 1000;
/**
 * The parent of dockerd's rootless data root ($HOME/.local/share/docker, the stock image's VOLUME).
 * The emptyDir goes one level up: it is root's and world-writable, so dockerd (uid 1000) makes the
 * data root itself and may chmod it; mounted at the data root, dockerd's chmod fails (measured).
 */
const ROOTLESS_DATA_PARENT = "/home/rootless/.local/share";

/** The dind container for a queue; `buildPath` is the build directory it shares with the command container. */
export function dindContainer(worker: WorkerSettings, buildPath: string): V1Container {
    const rootless = worker.dind === "rootless";
    return {
        name: DIND_CONTAINER,
        image: worker.dindImage,
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
        // dockerd-entrypoint.sh); the wrapper passes them to it.
        command: [...DIND_COMMAND],
        args: [...DIND_ARGS],
        // No gate: the agent starts, acquires its job and runs its pre-bootstrap while dockerd boots
        // (the agent itself never uses docker: buildkite/agent v3.138.3 run_job.go, the socket is made
        // after acquisition), and only the command container waits for dockerd, just before its
        // bootstrap (agentLauncher.ts, commandScript).
        resources: worker.resources.dind,
        volumeMounts: [
            { name: "build", mountPath: buildPath },
            { name: "docker", mountPath: rootless ? ROOTLESS_DATA_PARENT : "/var/lib/docker" },
            { name: "docker-socket", mountPath: DOCKER_SOCKET_DIR },
            // Where the agent launcher marks its exit.
            { name: "workspace", mountPath: JOB_CONTEXT_PATH, readOnly: true },
        ],
    };
}
