/**
 * The local cluster's stand-in for a kubelet, for tests that need more pods than 2 cores can run
 * (the 1,000-event burst, quota tests; DEVELOPERS.md lists them). It registers node
 * `scaledkite-local-node`, tainted and labelled `local.scaledkite.io/stand-in=true` so that only
 * pods that ask for it (STAND_IN_SCHEDULING) are scheduled there by kube-scheduler, keeps posting
 * its status, and moves the pods bound to it Pending -> Running -> Succeeded (or Failed), honouring
 * native sidecars (they run beside the main containers and are stopped once those exit), and
 * finishes deletions the way a kubelet confirms them. It runs no container: every other pod runs
 * on the real node.
 *
 * Tests steer a pod through its annotations (the stack's `annotations` setting puts them on workers):
 *   local.scaledkite.io/exit-code    exit code of the main containers (default 0)
 *   local.scaledkite.io/run-seconds  how long the main containers "run" (default 1)
 * and an image whose tag is `does-not-exist` never pulls (ErrImagePull). A nodeSelector on
 * `local.scaledkite.io/unschedulable` matches no node, so kube-scheduler reports it Unschedulable.
 */
import type * as K8s from "@kubernetes/client-node";
import type { V1ContainerStatus, V1Pod } from "@kubernetes/client-node";

export const LOCAL_NODE = "scaledkite-local-node";
/** The stand-in node's label and taint. */
export const STAND_IN_LABEL = "local.scaledkite.io/stand-in";
/** Worker scheduling (stack config keys) that puts pods on the stand-in node. */
export const STAND_IN_SCHEDULING = {
    nodeSelector: { [STAND_IN_LABEL]: "true" },
    tolerations: [{ key: STAND_IN_LABEL, operator: "Exists", effect: "NoSchedule" }],
};
export const ANNOTATION_EXIT_CODE = "local.scaledkite.io/exit-code";
export const ANNOTATION_RUN_SECONDS = "local.scaledkite.io/run-seconds";
export const UNSCHEDULABLE_LABEL = "local.scaledkite.io/unschedulable";
export const MISSING_IMAGE_TAG = ":does-not-exist";

type Phase = "Pending" | "Running" | "Succeeded" | "Failed";

function isSidecar(c: { restartPolicy?: string }): boolean {
    return c.restartPolicy === "Always";
}

function now(): Date {
    return new Date();
}

/** The next status a pod moves to, given where it is. Pure, so it is easy to reason about. */
export function nextStatus(pod: V1Pod, outcome: "start" | "finish" | "image-missing"): V1Pod["status"] {
    const spec = pod.spec!;
    const status = { ...(pod.status ?? {}) };
    const started = status.startTime ?? now();
    const init = spec.initContainers ?? [];
    const running = (name: string, image: string): V1ContainerStatus => ({
        name,
        image,
        imageID: `local://${image}`,
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: started } },
        containerID: `local://${pod.metadata!.uid}/${name}`,
    });
    const terminated = (name: string, image: string, exitCode: number, reason: string): V1ContainerStatus => ({
        name,
        image,
        imageID: `local://${image}`,
        ready: false,
        started: false,
        restartCount: 0,
        state: { terminated: { exitCode, reason, startedAt: started, finishedAt: now() } },
        containerID: `local://${pod.metadata!.uid}/${name}`,
    });
    const condition = (type: string, value: boolean, reason?: string, message?: string) => ({
        type,
        status: value ? "True" : "False",
        lastTransitionTime: now(),
        ...(reason ? { reason } : {}),
        ...(message ? { message } : {}),
    });

    switch (outcome) {
        case "image-missing": {
            const waiting = (name: string, image: string): V1ContainerStatus => ({
                name,
                image,
                imageID: "",
                ready: false,
                started: false,
                restartCount: 0,
                state: {
                    waiting: {
                        reason: "ErrImagePull",
                        message: `failed to pull and unpack image "${image}": not found`,
                    },
                },
            });
            return {
                phase: "Pending",
                hostIP: "127.0.0.1",
                podIP: "127.0.0.1",
                startTime: started,
                conditions: [
                    condition("PodScheduled", true),
                    condition("Initialized", false),
                    condition("Ready", false, "ContainersNotReady"),
                ],
                initContainerStatuses: init.map((c) =>
                    c.image?.endsWith(MISSING_IMAGE_TAG) ? waiting(c.name, c.image!) : running(c.name, c.image!),
                ),
                containerStatuses: spec.containers.map((c) => waiting(c.name, c.image!)),
            };
        }
        case "start":
            return {
                phase: "Running",
                hostIP: "127.0.0.1",
                podIP: "127.0.0.1",
                podIPs: [{ ip: "127.0.0.1" }],
                startTime: started,
                conditions: [
                    condition("PodScheduled", true),
                    condition("Initialized", true),
                    condition("ContainersReady", true),
                    condition("Ready", true),
                ],
                initContainerStatuses: init.map((c) =>
                    isSidecar(c) ? running(c.name, c.image!) : terminated(c.name, c.image!, 0, "Completed"),
                ),
                containerStatuses: spec.containers.map((c) => running(c.name, c.image!)),
            };
        case "finish": {
            const exitCode = Number(pod.metadata?.annotations?.[ANNOTATION_EXIT_CODE] ?? "0") || 0;
            const phase: Phase = exitCode === 0 ? "Succeeded" : "Failed";
            return {
                ...status,
                phase,
                conditions: [
                    condition("PodScheduled", true),
                    condition("Initialized", true),
                    condition("ContainersReady", false, "PodCompleted"),
                    condition("Ready", false, "PodCompleted"),
                ],
                // Sidecars are stopped by the kubelet once the main containers have exited.
                initContainerStatuses: init.map((c) =>
                    terminated(c.name, c.image!, isSidecar(c) ? 137 : 0, isSidecar(c) ? "Error" : "Completed"),
                ),
                containerStatuses: spec.containers.map((c) =>
                    terminated(c.name, c.image!, exitCode, exitCode === 0 ? "Completed" : "Error"),
                ),
            };
        }
    }
}

function isTerminal(pod: V1Pod): boolean {
    return pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed";
}

function imageMissing(pod: V1Pod): boolean {
    return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].some((c) =>
        c.image?.endsWith(MISSING_IMAGE_TAG),
    );
}

/** Runs pods of the cluster behind `kc` until `stop()` is called. */
export async function runPods(kc: K8s.KubeConfig, log: (s: string) => void = () => {}): Promise<{ stop: () => void }> {
    const k8s: typeof K8s = require("@kubernetes/client-node");
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const timers = new Map<string, NodeJS.Timeout>();
    const handled = new Map<string, string>(); // pod uid -> last step taken
    let stopped = false;

    try {
        await core.createNode({
            body: {
                metadata: {
                    name: LOCAL_NODE,
                    labels: {
                        "kubernetes.io/hostname": LOCAL_NODE,
                        "kubernetes.io/os": "linux",
                        [STAND_IN_LABEL]: "true",
                    },
                },
                spec: { taints: [{ key: STAND_IN_LABEL, value: "true", effect: "NoSchedule" }] },
            },
        });
    } catch (e) {
        if ((e as { code?: number }).code !== 409) throw e;
    }
    // Ready, with room for thousands of pods; the Ready condition's heartbeat is posted every 10 s
    // (node-lifecycle marks a node unreachable after 50 s without one).
    const capacity = { cpu: "1000", memory: "4000Gi", pods: "10000", "ephemeral-storage": "1000Gi" };
    const postStatus = async () => {
        for (let attempt = 0; ; attempt++) {
            const node = await core.readNodeStatus({ name: LOCAL_NODE });
            const ready = node.status?.conditions?.find((c) => c.type === "Ready" && c.status === "True");
            node.status = {
                ...node.status,
                capacity,
                allocatable: capacity,
                conditions: [
                    {
                        type: "Ready",
                        status: "True",
                        reason: "StandIn",
                        message: "the stand-in pod runner",
                        lastHeartbeatTime: now(),
                        lastTransitionTime: ready?.lastTransitionTime ?? now(),
                    },
                ],
                addresses: [{ type: "Hostname", address: LOCAL_NODE }],
            };
            try {
                await core.replaceNodeStatus({ name: LOCAL_NODE, body: node });
                return;
            } catch (e) {
                // node-lifecycle writes the node too: read again on a conflict
                if ((e as { code?: number }).code !== 409 || attempt > 20) throw e;
            }
        }
    };
    await postStatus();
    const heartbeat = setInterval(() => {
        void postStatus().catch((e) => log(`node status: ${(e as Error).message.split("\n")[0]}`));
    }, 10_000);

    const key = (pod: V1Pod) => `${pod.metadata!.namespace}/${pod.metadata!.name}`;

    async function setStatus(pod: V1Pod, step: "start" | "finish" | "image-missing"): Promise<void> {
        for (let attempt = 0; attempt < 5; attempt++) {
            try {
                const fresh =
                    attempt === 0
                        ? pod
                        : await core.readNamespacedPodStatus({
                              name: pod.metadata!.name!,
                              namespace: pod.metadata!.namespace!,
                          });
                if (fresh.metadata?.deletionTimestamp || isTerminal(fresh)) return;
                fresh.status = nextStatus(fresh, step);
                await core.replaceNamespacedPodStatus({
                    name: pod.metadata!.name!,
                    namespace: pod.metadata!.namespace!,
                    body: fresh,
                });
                log(`${key(pod)}: ${step}`);
                return;
            } catch (e) {
                const code = (e as { code?: number }).code;
                if (code === 404) return;
                if (code !== 409) {
                    log(`${key(pod)}: ${step} failed: ${(e as Error).message.split("\n")[0]}`);
                    return;
                }
            }
        }
    }

    async function onPod(type: string, pod: V1Pod): Promise<void> {
        if (stopped) return;
        const uid = pod.metadata!.uid!;
        if (type === "DELETED") {
            clearTimeout(timers.get(uid));
            timers.delete(uid);
            handled.delete(uid);
            return;
        }
        // The real node's kubelet runs every other pod.
        if (pod.spec?.nodeName !== LOCAL_NODE) return;
        if (pod.metadata?.deletionTimestamp) {
            // A kubelet confirms a graceful deletion once the containers have stopped.
            if (handled.get(uid) === "deleting") return;
            handled.set(uid, "deleting");
            clearTimeout(timers.get(uid));
            try {
                await core.deleteNamespacedPod({
                    name: pod.metadata.name!,
                    namespace: pod.metadata.namespace!,
                    gracePeriodSeconds: 0,
                });
            } catch {
                /* already gone */
            }
            return;
        }
        if (isTerminal(pod)) return;
        if (handled.get(uid) === "started" || handled.get(uid) === "image-missing") return;
        if (imageMissing(pod)) {
            handled.set(uid, "image-missing");
            await setStatus(pod, "image-missing");
            return;
        }
        handled.set(uid, "started");
        await setStatus(pod, "start");
        const seconds = Number(pod.metadata?.annotations?.[ANNOTATION_RUN_SECONDS] ?? "1");
        timers.set(
            uid,
            setTimeout(
                () => {
                    timers.delete(uid);
                    void setStatus(pod, "finish");
                },
                Math.max(0, seconds) * 1000,
            ),
        );
    }

    const watch = new k8s.Watch(kc);
    let current: { abort(): void } | undefined;
    const start = async (): Promise<void> => {
        if (stopped) return;
        try {
            current = await watch.watch(
                "/api/v1/pods",
                {},
                (type: string, obj: V1Pod) => {
                    void onPod(type, obj);
                },
                () => {
                    if (!stopped) setTimeout(() => void start(), 200);
                },
            );
        } catch (e) {
            log(`watch failed: ${(e as Error).message}; retrying`);
            setTimeout(() => void start(), 1000);
        }
    };
    await start();
    return {
        stop() {
            stopped = true;
            clearInterval(heartbeat);
            current?.abort();
            for (const t of timers.values()) clearTimeout(t);
        },
    };
}
