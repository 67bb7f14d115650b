/** What the sweep tells Buildkite while a job waits, and when it lists queues to keep them Connected. Pure. */
import * as assert from "assert";
import type { V1Pod } from "@kubernetes/client-node";
import { heartbeatOffsets, passedCheckpoint, waitNotices, waitingReason } from "../../scheduler/core/notices";

const MIN = 60_000;

describe("wait notices", () => {
    const checkpoints: [string, number, number, number | undefined][] = [
        ["a wait just past 1 min, one-minute sweeps", 65_000, MIN, 1],
        ["the next sweep (2 min 5 s) says nothing", 125_000, MIN, undefined],
        ["5 min", 5 * MIN + 1_000, MIN, 5],
        ["15 and 60 min", 60 * MIN + 30_000, MIN, 60],
        ["with five-minute sweeps, 4 min 59 s already passed 1 min", 4 * MIN + 59_000, 5 * MIN, 1],
        ["under a minute: nothing yet", 59_000, MIN, undefined],
    ];
    for (const [name, wait, interval, want] of checkpoints)
        it(name, () => assert.strictEqual(passedCheckpoint(wait, interval), want));

    it("never more than four per reason: one per checkpoint over a two-hour wait of one-minute sweeps", () => {
        let told = 0;
        for (let wait = 0; wait <= 120 * MIN; wait += MIN)
            if (passedCheckpoint(wait + 3_000, MIN) !== undefined) told++;
        assert.strictEqual(told, 4);
    });

    const pod = (status: V1Pod["status"], extra: Partial<V1Pod["metadata"]> = {}): V1Pod => ({
        metadata: {
            labels: { "buildkite.com/job-uuid": "u1" },
            annotations: { "scaledkite.io/runnable-at": "2026-11-28T11:58:55Z" },
            ...extra,
        },
        spec: { nodeName: "n1", containers: [] },
        status,
    });
    const reasons: [string, V1Pod, RegExp | undefined][] = [
        [
            "no node fits",
            pod({
                phase: "Pending",
                conditions: [
                    {
                        type: "PodScheduled",
                        status: "False",
                        reason: "Unschedulable",
                        message: "0/3 nodes are available: 3 Insufficient cpu. preemption: …",
                    },
                ],
            }),
            /^no node fits its worker yet \(0\/3 nodes are available: 3 Insufficient cpu\)$/,
        ],
        [
            "an image that does not pull",
            pod({
                phase: "Pending",
                conditions: [{ type: "PodScheduled", status: "True" }],
                containerStatuses: [
                    {
                        name: "agent",
                        image: "acme/agent:1",
                        imageID: "",
                        ready: false,
                        restartCount: 0,
                        state: { waiting: { reason: "ImagePullBackOff" } },
                    },
                ],
            }),
            /cannot pull image acme\/agent:1 yet \(ImagePullBackOff\); retrying/,
        ],
        [
            "still starting",
            pod({ phase: "Pending", conditions: [{ type: "PodScheduled", status: "True" }] }),
            /starting on node n1 \(pulling images or starting containers\)/,
        ],
        ["running: nothing to say", pod({ phase: "Running" }), undefined],
    ];
    for (const [name, p, want] of reasons) {
        it(`reason: ${name}`, () => {
            const r = waitingReason(p);
            if (want) assert.match(r!, want);
            else assert.strictEqual(r, undefined);
        });
    }

    it("a notice per waiting pod and per deferred job that passed a checkpoint, each within 256 characters", () => {
        const now = new Date("2026-11-28T12:00:00Z");
        const long = pod({
            phase: "Pending",
            conditions: [
                { type: "PodScheduled", status: "False", message: `0/3 nodes are available: ${"x".repeat(400)}` },
            ],
        });
        const notices = waitNotices(
            [long],
            [
                { uuid: "u2", scheduledAt: "2026-11-28T11:58:50Z" },
                { uuid: "u3", scheduledAt: "2026-11-28T11:59:30Z" },
            ],
            now,
            MIN,
        );
        assert.deepStrictEqual(
            notices.map((n) => n.job_uuid),
            ["u1", "u2"],
            "u3 has waited 30 s",
        );
        assert.ok(notices.every((n) => n.detail.length <= 256 && n.timestamp === now.toISOString()));
        assert.match(notices[1].detail, /^Scaledkite: waiting 1 min: the stack's spend cap is full/);
    });
});

describe("heartbeat offsets (keepQueuesConnected)", () => {
    const table: [string, number, number, number[]][] = [
        ["one-minute sweeps, a 60 s Lambda: at 20 and 40 s", MIN, MIN, [20_000, 40_000]],
        ["a Lambda with 26 s: at 20 s", MIN, 26_000, [20_000]],
        ["five-minute sweeps still end within the Lambda's minute", 5 * MIN, MIN, [20_000, 40_000]],
        ["a 20 s Lambda: none", MIN, 20_000, []],
    ];
    for (const [name, interval, timeout, want] of table)
        it(name, () => assert.deepStrictEqual(heartbeatOffsets(interval, timeout), want));
});
