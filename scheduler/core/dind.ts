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

/** How long the dind sidecar's postStart hook waits for dockerd before the kubelet restarts the sidecar. */
export const DIND_READY_TIMEOUT_SECONDS = 120;

/** The postStart hook: exit 0 once dockerd answers on its socket, 1 after DIND_READY_TIMEOUT_SECONDS. */
export function dindReadyScript(): string {
    const tries = DIND_READY_TIMEOUT_SECONDS * 20;
    return `i=0; until docker --host=${DOCKER_HOST} version --format '{{.Server.Version}}' >/dev/null 2>&1; do i=$((i+1)); [ "$i" -lt ${tries} ] || exit 1; sleep 0.05; done`;
}

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
            { name: "build", mountPath: buildPath },
            { name: "docker", mountPath: rootless ? ROOTLESS_DATA_PARENT : "/var/lib/docker" },
            { name: "docker-socket", mountPath: DOCKER_SOCKET_DIR },
        ],
    };
}
