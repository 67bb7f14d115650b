/** stuckReason and notRunReason: when the sweep gives up on a worker. Table-driven. */
import * as assert from "assert";
import type { CoreV1Event, V1ContainerStatus, V1Pod } from "@kubernetes/client-node";
import { AGENT_EXIT_NOT_RUN } from "../../scheduler/core/agentLauncher";
import { firstFailures, notRunReason, stuckReason } from "../../scheduler/core/stuck";

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
const OPTS = { pendingTimeoutMs: 10 * 60_000, startFailureGraceMs: 5 * 60_000 };

/** A Pending worker pod: created `createdMin` ago, scheduled `scheduledMin` ago (undefined: not scheduled), its command container waiting for `waiting`. */
function pendingPod(createdMin: number, scheduledMin?: number, waiting?: string): V1Pod {
    const command: V1ContainerStatus = {
        name: "command",
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
            conditions: [
                scheduledMin === undefined
                    ? {
                          type: "PodScheduled",
                          status: "False",
                          reason: "Unschedulable",
                          message: "0/3 nodes are available: insufficient cpu",
                          lastTransitionTime: ago(createdMin),
                      }
                    : { type: "PodScheduled", status: "True", lastTransitionTime: ago(scheduledMin) },
            ],
            containerStatuses: scheduledMin === undefined ? [] : [command],
        },
    };
}

/** A kubelet `Failed` event about a container of pod w-1, first seen `minutes` ago. */
const failedEvent = (minutes: number, container = "command", reason = "Failed"): CoreV1Event => ({
    metadata: {},
    reason,
    type: "Warning",
    firstTimestamp: ago(minutes),
    involvedObject: { kind: "Pod", name: "w-1", fieldPath: `spec.containers{${container}}` },
});

describe("stuckReason", () => {
    const table: [string, V1Pod, CoreV1Event[], RegExp | undefined][] = [
        [
            "unschedulable past the pending timeout",
            pendingPod(11),
            [],
            /could not be scheduled for 11 min: 0\/3 nodes are available: insufficient cpu/,
        ],
        ["unschedulable, within the pending timeout", pendingPod(9), [], undefined],
        [
            "scheduled and still pulling a large image after 30 min: not pending, not stuck",
            pendingPod(30, 29),
            [],
            undefined,
        ],
        [
            "one ErrImagePull (rate limit) on a pod created 20 min ago and placed 15 min ago, first failed 1 min ago",
            pendingPod(20, 15, "ErrImagePull"),
            [failedEvent(1)],
            undefined,
        ],
        [
            "a pull failing for 6 min, per the kubelet's first event",
            pendingPod(20, 15, "ImagePullBackOff"),
            [failedEvent(6)],
            /could not start: ImagePullBackOff for container command \(image "registry.example\/agent:1"\), failing for 6 min: ImagePullBackOff: details$/,
        ],
        [
            "the earliest of several events counts",
            pendingPod(20, 15, "ImagePullBackOff"),
            [failedEvent(2), failedEvent(7), failedEvent(4)],
            /failing for 7 min/,
        ],
        [
            "the Secret not filled yet (token sync), 2 min after scheduling, no event yet",
            pendingPod(3, 2, "CreateContainerConfigError"),
            [],
            undefined,
        ],
        [
            "the Secret still missing 6 min after scheduling, no event: counted from scheduling",
            pendingPod(8, 6, "CreateContainerConfigError"),
            [],
            /could not start: CreateContainerConfigError .*failing for 6 min/,
        ],
        [
            "another container's failure events do not count",
            pendingPod(20, 15, "ImagePullBackOff"),
            [failedEvent(9, "dind")],
            /failing for 15 min/,
        ],
        [
            "BackOff events are not failures",
            pendingPod(20, 15, "ImagePullBackOff"),
            [failedEvent(1), failedEvent(9, "command", "BackOff")],
            undefined,
        ],
    ];
    for (const [name, pod, events, want] of table) {
        it(name, () => {
            const got = stuckReason(pod, NOW, OPTS, firstFailures(events));
            if (want === undefined) assert.strictEqual(got, undefined);
            else assert.match(got ?? "", want);
        });
    }

    it("a running or deleted pod is never stuck", () => {
        const running = pendingPod(60, 59, "ImagePullBackOff");
        running.status!.phase = "Running";
        assert.strictEqual(stuckReason(running, NOW, OPTS), undefined);
        const deleting = pendingPod(60);
        deleting.metadata!.deletionTimestamp = ago(1);
        assert.strictEqual(stuckReason(deleting, NOW, OPTS), undefined);
    });
});
