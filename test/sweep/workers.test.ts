/**
 * The workers' half of the sweep (scheduler/sweep/workers.ts) with fakes of the Stacks API and the
 * Job client: table-driven over pod states, what it fails in Buildkite, deletes, keeps and says. The
 * kubelet's and kube-scheduler's real statuses are in test/integration/sweep.test.ts.
 */
import * as assert from "assert";
import type { V1Pod } from "@kubernetes/client-node";
import { AGENT_EXIT_NOT_RUN } from "../../scheduler/core/agentLauncher";
import type { JobClient } from "../../scheduler/clients/kube";
import type { StacksApi } from "../../scheduler/clients/stacksApi";
import { createWorkerSweep } from "../../scheduler/sweep/workers";
import { settingsFor } from "../helpers/builders";

const MIN = 60_000;
/** `min` minutes before the moment it is read: the tables are built when the suite loads, long before a test runs. */
const ago = (min: number) => new Date(Date.now() - min * MIN);

/** A worker pod of job `uuid` on queue `queue`, created `ageMin` minutes ago. */
function worker(
    uuid: string,
    phase: string,
    ageMin: number,
    status: Partial<NonNullable<V1Pod["status"]>> = {},
): V1Pod {
    return {
        metadata: {
            name: `w-${uuid}-x`,
            get creationTimestamp() {
                return ago(ageMin);
            },
            labels: { "buildkite.com/job-uuid": uuid, "job-name": `w-${uuid}` },
            annotations: { "scaledkite.io/queue": "dynamic" },
        },
        status: { phase, ...status },
    };
}
const unschedulable = {
    conditions: [
        { type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/3 nodes are available" },
    ],
};
const pulling = (reason: string) => ({
    conditions: [
        {
            type: "PodScheduled",
            status: "True",
            get lastTransitionTime() {
                return ago(10);
            },
        },
    ],
    containerStatuses: [
        {
            name: "container-0",
            image: "alpine:nope",
            imageID: "",
            ready: false,
            restartCount: 0,
            state: { waiting: { reason } },
        },
    ],
});
const notRun = {
    containerStatuses: [
        {
            name: "agent",
            image: "a",
            imageID: "",
            ready: false,
            restartCount: 0,
            state: { terminated: { exitCode: AGENT_EXIT_NOT_RUN } },
        },
    ],
};

function fakes(pods: V1Pod[], opts: { states?: Record<string, string>; finishFails?: boolean } = {}) {
    const finished: [string, string][] = [];
    const deleted: string[] = [];
    const notified: string[] = [];
    const jobs: JobClient = {
        server: "https://k8s.example",
        createJob: async () => "created",
        deleteJob: async (_ns, name) => {
            deleted.push(name);
            return "deleted";
        },
        listWorkerPods: async () => pods,
        listPodFailures: async () => [],
    };
    const stacks = {
        finish: async (_key: string, uuid: string, detail: string) => {
            if (opts.finishFails) throw new Error("Buildkite Stacks API POST /finish: 503");
            finished.push([uuid, detail]);
        },
        jobStates: async (_key: string, uuids: string[]) =>
            Object.fromEntries(uuids.map((u) => [u, opts.states?.[u] ?? "scheduled"])),
        notify: async (_key: string, ns: { job_uuid: string }[]) => {
            notified.push(...ns.map((n) => n.job_uuid));
        },
    } as unknown as StacksApi;
    return { jobs, stacks, finished, deleted, notified };
}

describe("the workers' sweep (fakes of the Stacks API and the Job client)", () => {
    const settings = settingsFor();
    const stuck = { pendingTimeoutMs: 10 * MIN, startFailureGraceMs: 5 * MIN, intervalMs: MIN };

    const table: [
        string,
        V1Pod[],
        { states?: Record<string, string>; finishFails?: boolean },
        { failed: string[]; deleted: string[]; kept: string[]; cancelled: string[]; reason?: RegExp },
    ][] = [
        [
            "a worker running: left alone",
            [worker("a", "Running", 30)],
            {},
            { failed: [], deleted: [], kept: [], cancelled: [] },
        ],
        [
            "unschedulable for 5 min: it waits",
            [worker("a", "Pending", 5, unschedulable)],
            {},
            { failed: [], deleted: [], kept: [], cancelled: [] },
        ],
        [
            "unschedulable for 11 min: failed in Buildkite with the scheduler's words, then deleted",
            [worker("a", "Pending", 11, unschedulable)],
            {},
            {
                failed: ["a"],
                deleted: ["w-a"],
                kept: [],
                cancelled: [],
                reason: /could not be scheduled for 11 min: 0\/3 nodes are available/,
            },
        ],
        [
            "an image that cannot be pulled past the grace: failed, naming the image",
            [worker("a", "Pending", 12, pulling("ImagePullBackOff"))],
            {},
            {
                failed: ["a"],
                deleted: ["w-a"],
                kept: [],
                cancelled: [],
                reason: /ImagePullBackOff for container container-0 \(image "alpine:nope"\)/,
            },
        ],
        [
            "the same, but Buildkite cannot be told: the worker is kept for the next sweep",
            [worker("a", "Pending", 12, pulling("ErrImagePull"))],
            { finishFails: true },
            { failed: [], deleted: [], kept: ["a"], cancelled: [] },
        ],
        [
            "an agent that could not acquire its job, retries used up: failed",
            [
                worker("a", "Failed", 3, notRun),
                {
                    ...worker("a", "Failed", 2, notRun),
                    metadata: { ...worker("a", "Failed", 2).metadata, name: "w-a-y" },
                },
            ],
            {},
            {
                failed: ["a"],
                deleted: ["w-a"],
                kept: [],
                cancelled: [],
                reason: /exited 2 time\(s\) without running the job/,
            },
        ],
        [
            "a waiting worker of a job cancelled in Buildkite: deleted, nothing failed",
            [worker("a", "Pending", 1, unschedulable)],
            { states: { a: "canceled" } },
            { failed: [], deleted: ["w-a"], kept: [], cancelled: ["a"] },
        ],
    ];
    for (const [name, pods, opts, want] of table)
        it(name, async () => {
            const f = fakes(pods, opts);
            const lines: string[] = [];
            const sweep = createWorkerSweep(settings, f.stacks, f.jobs, "stack", (l) => lines.push(l), stuck);
            const r = await sweep([]);
            assert.deepStrictEqual(
                r.failed.map((x) => x.jobUuid),
                want.failed,
            );
            assert.deepStrictEqual(f.deleted, want.deleted);
            assert.deepStrictEqual(
                r.kept.map((x) => x.jobUuid),
                want.kept,
            );
            assert.deepStrictEqual(r.cancelled, want.cancelled);
            if (want.reason) assert.match(f.finished[0][1], want.reason);
            assert.ok(
                lines.some((l) => l.includes('"msg":"scaledkite.workers"')),
                "a line of worker metrics per queue",
            );
        });

    it("a pod whose labels name no Job of its own is never failed or deleted", async () => {
        const stray = worker("a", "Pending", 30, unschedulable);
        delete stray.metadata!.labels!["job-name"];
        const f = fakes([stray]);
        const r = await createWorkerSweep(settings, f.stacks, f.jobs, "stack", () => {}, stuck)([]);
        assert.deepStrictEqual([r.failed, f.deleted, f.finished], [[], [], []]);
    });
});
