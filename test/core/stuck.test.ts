/** judgeWorker, podHistory, noPodReason and notRunReason: when the sweep gives up on a worker. Table-driven. */
import * as assert from "assert";
import type { CoreV1Event, V1ContainerStatus, V1Pod } from "@kubernetes/client-node";
import { AGENT_EXIT_NOT_RUN } from "../../scheduler/core/agentLauncher";
import { podHistory } from "../../scheduler/core/podHistory";
import { judgeWorker, needsHistory, noPodReason, notRunReason, type WorkerState } from "../../scheduler/core/stuck";

/** A worker pod builder: phase, and the agent container's exit code when it terminated. */
function pod(name: string, phase: string, agentExit?: number, deleting = false): V1Pod {
    return {
        metadata: { name, ...(deleting ? { deletionTimestamp: new Date() } : {}) },
        status: {
            phase,
            containerStatuses:
                agentExit === undefined
                    ? []
                    : [
                          {
                              name: "agent",
                              image: "a",
                              imageID: "",
                              ready: false,
                              restartCount: 0,
                              state: { terminated: { exitCode: agentExit } },
                          },
                      ],
        },
    };
}

describe("notRunReason", () => {
    const table: [string, V1Pod[], number, RegExp | undefined][] = [
        [
            "one worker that ran nothing, backoffLimit 0",
            [pod("w-1", "Failed", AGENT_EXIT_NOT_RUN)],
            0,
            /exited 1 time\(s\) without running the job .* pod w-1/,
        ],
        [
            "two that ran nothing, backoffLimit 1",
            [pod("w-1", "Failed", AGENT_EXIT_NOT_RUN), pod("w-2", "Failed", AGENT_EXIT_NOT_RUN)],
            1,
            /exited 2 time\(s\) .* pod w-2/,
        ],
        ["one that ran nothing, a retry still to come", [pod("w-1", "Failed", AGENT_EXIT_NOT_RUN)], 1, undefined],
        ["the retry is running", [pod("w-1", "Failed", AGENT_EXIT_NOT_RUN), pod("w-2", "Running")], 0, undefined],
        ["the retry is pending", [pod("w-1", "Failed", AGENT_EXIT_NOT_RUN), pod("w-2", "Pending")], 0, undefined],
        ["rejected (27): the Job failed on its own, nothing to give up", [pod("w-1", "Failed", 27)], 0, undefined],
        ["the job ran and failed", [pod("w-1", "Failed", 1)], 0, undefined],
        ["the job ran", [pod("w-1", "Succeeded", 0)], 0, undefined],
        ["being deleted already", [pod("w-1", "Failed", AGENT_EXIT_NOT_RUN, true)], 0, undefined],
        ["no pods", [], 0, undefined],
    ];
    for (const [name, pods, backoffLimit, want] of table) {
        it(name, () => {
            const got = notRunReason(pods, backoffLimit);
            if (want === undefined) assert.strictEqual(got, undefined);
            else assert.match(got ?? "", want);
        });
    }
});

const NOW = new Date("2026-11-28T12:00:00Z");
const ago = (minutes: number) => new Date(NOW.getTime() - minutes * 60_000);
const OPTS = { pendingTimeoutMs: 15 * 60_000, startFailureGraceMs: 30_000 };

/** A Pending worker pod: created `createdMin` ago, started `startedMin` ago (undefined: not scheduled), its command container waiting for `waiting`. */
function pendingPod(createdMin: number, startedMin?: number, waiting?: string, container = "command"): V1Pod {
    const status: V1ContainerStatus = {
        name: container,
        image: "registry.example/agent:1",
        imageID: "",
        ready: false,
        restartCount: 0,
        state: {
            waiting: { reason: waiting ?? "ContainerCreating", message: waiting ? `${waiting}: details` : undefined },
        },
    };
    return {
        metadata: { name: "w-1", creationTimestamp: ago(createdMin) },
        status: {
            phase: "Pending",
            ...(startedMin === undefined ? {} : { startTime: ago(startedMin) }),
            conditions: [
                startedMin === undefined
                    ? {
                          type: "PodScheduled",
                          status: "False",
                          reason: "Unschedulable",
                          message: "0/3 nodes are available: insufficient cpu. preemption: 0/3 nodes",
                          lastTransitionTime: ago(createdMin),
                      }
                    : { type: "PodScheduled", status: "True", lastTransitionTime: ago(startedMin) },
            ],
            containerStatuses: startedMin === undefined ? [] : [status],
        },
    };
}

/** A kubelet event about a container of pod w-1, seen `count` times. */
const kubelet = (reason: string, message: string, count = 1, container = "command"): CoreV1Event => ({
    metadata: {},
    reason,
    message,
    count,
    involvedObject: { kind: "Pod", name: "w-1", fieldPath: `spec.containers{${container}}` },
});
const pullingEv = (n: number) => kubelet("Pulling", 'Pulling image "registry.example/agent:1"', n);
const failedPull = (n: number) => kubelet("Failed", 'Failed to pull image "registry.example/agent:1": not found', n);
const createError = (n: number) => kubelet("Failed", "Error: context deadline exceeded", n);
/** A cluster autoscaler event about pod w-1, last sent `min` minutes ago (cluster-autoscaler 1.36.1's words). */
const autoscaler = (reason: "TriggeredScaleUp" | "NotTriggerScaleUp", min: number): CoreV1Event => ({
    metadata: {},
    reason,
    message:
        reason === "TriggeredScaleUp"
            ? "pod triggered scale-up: [{eks-ci-pool 2->3 (max: 10)}]"
            : "pod didn't trigger scale-up: 1 max node group size reached",
    source: { component: "cluster-autoscaler" },
    lastTimestamp: ago(min),
    involvedObject: { kind: "Pod", name: "w-1" },
});

describe("judgeWorker", () => {
    const table: [string, V1Pod, CoreV1Event[] | undefined, WorkerState["kind"], RegExp?][] = [
        [
            "unschedulable past the pending timeout (15 min)",
            pendingPod(16),
            [],
            "unrunnable",
            /could not be scheduled for 16 min: 0\/3 nodes are available: insufficient cpu/,
        ],
        [
            "unschedulable for 12 min (a node pool at its cap, a node being added): it waits, saying why",
            pendingPod(12),
            [],
            "waiting",
            /^no node fits its worker yet \(0\/3 nodes are available: insufficient cpu\)$/,
        ],
        [
            "unschedulable for 16 min, but the autoscaler triggered a scale-up 10 min ago: the node gets its 15 min",
            pendingPod(16),
            [autoscaler("NotTriggerScaleUp", 14), autoscaler("TriggeredScaleUp", 10)],
            "waiting",
            /no node fits its worker yet \(.*; the cluster autoscaler is adding a node \(pod triggered scale-up: \[\{eks-ci-pool 2->3/,
        ],
        [
            "unschedulable for 16 min, the last scale-up 15 min ago and none since (the node never came): failed, in the autoscaler's words",
            pendingPod(16),
            [autoscaler("TriggeredScaleUp", 15), autoscaler("NotTriggerScaleUp", 1)],
            "unrunnable",
            /could not be scheduled for 16 min: .*; the cluster autoscaler adds none \(pod didn't trigger scale-up: 1 max node group size reached\)$/,
        ],
        [
            "unschedulable for 5 min, the node pool at its cap: it waits, and says the autoscaler adds none",
            pendingPod(5),
            [autoscaler("TriggeredScaleUp", 5), autoscaler("NotTriggerScaleUp", 1)],
            "waiting",
            /the cluster autoscaler adds none \(pod didn't trigger scale-up: 1 max node group size reached\)\)$/,
        ],
        [
            "placed and still pulling a large image after 30 min: not stuck",
            pendingPod(30, 29),
            [],
            "waiting",
            /is starting/,
        ],
        [
            "ErrImagePull within the 30 s grace from the pod's start",
            pendingPod(1, 0.25, "ErrImagePull"),
            [pullingEv(2), failedPull(2)],
            "waiting",
            /cannot pull image .* \(2 failed pull\(s\)\)/,
        ],
        [
            "past the grace, two failed pulls, none in progress",
            pendingPod(2, 1, "ImagePullBackOff"),
            [pullingEv(2), failedPull(2)],
            "unrunnable",
            /could not start: ImagePullBackOff for container command \(image "registry.example\/agent:1"\), 2 pulls failed in 60 s since the pod started: ImagePullBackOff: details$/,
        ],
        [
            "past the grace, one failed pull and a slow re-pull in progress (the kubelet still says ImagePullBackOff)",
            pendingPod(20, 19, "ImagePullBackOff"),
            [pullingEv(2), failedPull(1)],
            "waiting",
            /1 failed pull\(s\), pulling again/,
        ],
        [
            "past the grace, one failed pull that ended (not a second one yet): it waits for the next attempt",
            pendingPod(2, 1, "ImagePullBackOff"),
            [pullingEv(1), failedPull(1)],
            "waiting",
        ],
        [
            "the kubelet's `Error: ErrImagePull` and BackOff events are not counted as pulls",
            pendingPod(2, 1, "ImagePullBackOff"),
            [
                pullingEv(1),
                failedPull(1),
                kubelet("Failed", "Error: ErrImagePull", 3),
                kubelet("BackOff", "Back-off pulling image", 5),
            ],
            "waiting",
        ],
        [
            "another container's failed pulls do not count",
            pendingPod(2, 1, "ImagePullBackOff"),
            [kubelet("Failed", 'Failed to pull image "x": y', 5, "dind"), pullingEv(1), failedPull(1)],
            "waiting",
        ],
        [
            "past the grace with no events about it (expired, or unreadable): by the grace alone",
            pendingPod(90, 89, "ImagePullBackOff"),
            undefined,
            "unrunnable",
            /failing/,
        ],
        ["an invalid image name: at once", pendingPod(0, 0, "InvalidImageName"), [], "unrunnable", /no retry can fix/],
        [
            "the Secret not filled yet (token sync), 10 s after the start",
            pendingPod(1, 10 / 60, "CreateContainerConfigError"),
            [],
            "waiting",
        ],
        [
            "the Secret still missing past the grace",
            pendingPod(2, 1, "CreateContainerConfigError"),
            [],
            "unrunnable",
            /CreateContainerConfigError .*failing for 60 s since the pod started/,
        ],
        [
            "a slow containerd: CreateContainerError twice, past the grace: it waits",
            pendingPod(5, 4, "CreateContainerError"),
            [createError(2)],
            "waiting",
        ],
        [
            "CreateContainerError three times past the grace: unrunnable",
            pendingPod(5, 4, "CreateContainerError"),
            [createError(3)],
            "unrunnable",
        ],
    ];
    for (const [name, pod, events, kind, reason] of table) {
        it(name, () => {
            const got = judgeWorker(pod, NOW, OPTS, events && podHistory(events));
            assert.strictEqual(got.kind, kind, JSON.stringify(got));
            if (reason) assert.match("reason" in got ? got.reason : "", reason);
        });
    }

    it("reads the autoscaler's events only when a pod has waited out the pending timeout", () => {
        assert.strictEqual(needsHistory(pendingPod(14), NOW, OPTS), false);
        assert.strictEqual(needsHistory(pendingPod(15), NOW, OPTS), true);
        assert.strictEqual(needsHistory(pendingPod(30, 29), NOW, OPTS), false, "placed and starting");
    });

    it("dind, a container the pod does not restart, exiting before the agent: failed before the job (if Buildkite says so); exiting 0 after it: fine", () => {
        const running = (dindExit: number): V1Pod => ({
            metadata: { name: "w-1", creationTimestamp: ago(1) },
            status: {
                phase: "Running",
                containerStatuses: [
                    { name: "agent", image: "a", imageID: "", ready: true, restartCount: 0, state: { running: {} } },
                    {
                        name: "dind",
                        image: "docker:dind",
                        imageID: "",
                        ready: false,
                        restartCount: 0,
                        state: { terminated: { exitCode: dindExit, reason: dindExit ? "Error" : "Completed" } },
                    },
                ],
            },
        });
        assert.deepStrictEqual(judgeWorker(running(127), NOW, OPTS), {
            kind: "beforeAcquire",
            cause: "crash",
            reason: "container dind of the worker exited 127 Error before the agent did, so the build has no docker; its log says why",
        });
        assert.strictEqual(judgeWorker(running(0), NOW, OPTS).kind, "fine");
    });

    it("a deleted pod, or one that succeeded, is fine", () => {
        const deleting = pendingPod(60);
        deleting.metadata!.deletionTimestamp = ago(1);
        assert.strictEqual(judgeWorker(deleting, NOW, OPTS).kind, "fine");
        assert.strictEqual(judgeWorker(pod("w-1", "Succeeded", 0), NOW, OPTS).kind, "fine");
    });

    it("a failed pod: 27 and 28 are the agent's own answers, anything else failed before the job (if Buildkite says so)", () => {
        assert.strictEqual(judgeWorker(pod("w-1", "Failed", 27), NOW, OPTS).kind, "fine");
        assert.strictEqual(judgeWorker(pod("w-1", "Failed", AGENT_EXIT_NOT_RUN), NOW, OPTS).kind, "fine");
        const one = judgeWorker(pod("w-1", "Failed", 1), NOW, OPTS);
        assert.deepStrictEqual(one, {
            kind: "beforeAcquire",
            cause: "failed",
            reason: "the worker failed before it ran the job: container agent exited 1",
        });
        const evicted: V1Pod = {
            metadata: { name: "w-1" },
            status: { phase: "Failed", reason: "Evicted", message: "low on memory" },
        };
        assert.match(
            (judgeWorker(evicted, NOW, OPTS) as { reason: string }).reason,
            /the pod failed \(Evicted\): low on memory/,
        );
    });
});

describe("noPodReason", () => {
    const job = (message: string): CoreV1Event => ({
        metadata: {},
        reason: "FailedCreate",
        message,
        involvedObject: { kind: "Job", name: "w" },
    });
    const table: [string, number, CoreV1Event[], RegExp | undefined][] = [
        [
            "refused by a policy for 40 s",
            40,
            [job('Error creating: pods "w-x" is forbidden: denied')],
            /refused the worker pod: pods "w-x" is forbidden: denied/,
        ],
        ["refused for 20 s: it may still get one", 20, [job("Error creating: forbidden")], undefined],
        ["the spend cap: waits", 600, [job("Error creating: pods is forbidden: exceeded quota: q")], undefined],
        ["no refusals: the Job controller has not got to it", 600, [], undefined],
    ];
    for (const [name, ageSec, events, want] of table)
        it(name, () => {
            const got = noPodReason(new Date(NOW.getTime() - ageSec * 1000), events, NOW);
            if (want === undefined) assert.strictEqual(got, undefined);
            else assert.match(got ?? "", want);
        });
});
