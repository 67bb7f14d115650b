/**
 * Docker-in-docker as a native sidecar (an init container with restartPolicy Always): Kubernetes stops
 * it once the other containers exit, so the pod completes with no hook or kubectl. dockerd listens only
 * on a unix socket in a volume shared with the command container: no TCP port. It is the only
 * privileged container of the pod. Pure.
 */
import type { V1Container } from "@kubernetes/client-node";
import { DIND_CONTAINER } from "./names";
import type { WorkerSettings } from "./settings";

/** dockerd's socket, in a volume shared by the dind sidecar and the agent container. */
export const DOCKER_SOCKET_DIR = "/var/run/dind";
export const DOCKER_HOST = `unix://${DOCKER_SOCKET_DIR}/docker.sock`;

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

/** How long a command container waits for dockerd before its bootstrap runs the step without it. */
export const DIND_READY_TIMEOUT_SECONDS = 120;

/** The dind sidecar for a queue; `buildPath` is the build directory it shares with the command container. */
export function dindSidecar(worker: WorkerSettings, buildPath: string): V1Container {
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
        // No gate on the sidecar: the agent starts, acquires its job and runs its pre-bootstrap while
        // dockerd boots (the agent itself never uses docker: buildkite/agent v3.138.3 run_job.go, the
        // socket is made after acquisition), and only the command container waits for dockerd, just
        // before its bootstrap (agentLauncher.ts, commandScript). A postStart hook that held every
        // container back until dockerd answered cost event → job started p50 1.0 s against 0.56 s
        // without dind (bench, 20 jobs on the real node).
        resources: worker.resources.dind,
        volumeMounts: [
            { name: "build", mountPath: buildPath },
            { name: "docker", mountPath: rootless ? ROOTLESS_DATA_PARENT : "/var/lib/docker" },
            { name: "docker-socket", mountPath: DOCKER_SOCKET_DIR },
        ],
    };
}
