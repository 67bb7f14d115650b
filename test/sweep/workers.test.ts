/**
 * The workers' half of the sweep (scheduler/sweep/workers.ts) with fakes of the Stacks API and the
 * Job client: table-driven over pod states, what it fails in Buildkite, deletes, keeps and says. The
 * kubelet's and kube-scheduler's real statuses are in test/integration/sweep.test.ts.
 */
import * as assert from "assert";
import type { CoreV1Event, V1Job, V1Pod } from "@kubernetes/client-node";
import { AGENT_EXIT_NOT_RUN } from "../../scheduler/core/agentLauncher";
import type { JobClient } from "../../scheduler/clients/kube";
import type { StacksApi } from "../../scheduler/clients/stacksApi";
import { createWorkerSweep } from "../../scheduler/sweep/workers";
import { settingsFor } from "../helpers/builders";

const MIN = 60_000;
/** `min` minutes before the moment it is read: the tables are built when the suite loads, long before a test runs. */
const ago = (min: number) => new Date(Date.now() - min * MIN);

const PREFIX = "buildkite-agent-";
/** A worker pod of job `uuid` on queue `queue`, created `ageMin` minutes ago, owned by its Job `w-<uuid>`. */
function worker(
    uuid: string,
    phase: string,
    ageMin: number,
    status: Partial<NonNullable<V1Pod["status"]>> = {},
): V1Pod {
    const job = `${PREFIX}${uuid}`;
    return {
        metadata: {
            name: `${job}-x`,
            uid: `uid-${uuid}-${phase}-${ageMin}`,
            get creationTimestamp() {
                return ago(ageMin);
            },
            labels: {
                "buildkite.com/job-uuid": uuid,
                "job-name": job,
                "app.kubernetes.io/managed-by": "scaledkite",
            },
            annotations: { "scaledkite.io/queue": "dynamic" },
            ownerReferences: [{ apiVersion: "batch/v1", kind: "Job", name: job, uid: "j", controller: true }],
        },
        status: { phase, ...status },
    };
}
/** A worker Job of `uuid`, created `ageSec` seconds ago. */
function workerJob(uuid: string, ageSec: number): V1Job {
    return {
        metadata: {
            name: `${PREFIX}${uuid}`,
            get creationTimestamp() {
                return new Date(Date.now() - ageSec * 1000);
            },
            labels: { "buildkite.com/job-uuid": uuid, "app.kubernetes.io/managed-by": "scaledkite" },
            annotations: { "scaledkite.io/queue": "dynamic" },
        },
        status: {},
    };
}
/** An event the Job controller or the kubelet wrote about `name`. */
function event(
    kind: string,
    name: string,
    reason: string,
    message: string,
    count = 1,
    container?: string,
): CoreV1Event {
    return {
        metadata: {},
        involvedObject: { kind, name, ...(container ? { fieldPath: `spec.containers{${container}}` } : {}) },
        reason,
        message,
        count,
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
/** The agent container terminated with `code`, before the job (its log said why). */
const exited = (code: number) => ({
    containerStatuses: [
        {
            name: "agent",
            image: "a",
            imageID: "",
            ready: false,
            restartCount: 0,
            state: { terminated: { exitCode: code, reason: "Error", message: "fatal: bad token\n" } },
        },
    ],
});
/** The dind sidecar in CrashLoopBackOff after 4 restarts. */
const crashLooping = {
    initContainerStatuses: [
        {
            name: "dind",
            image: "docker:dind",
            imageID: "",
            ready: false,
            restartCount: 4,
            state: { waiting: { reason: "CrashLoopBackOff" } },
            lastState: { terminated: { exitCode: 1, reason: "Error" } },
        },
    ],
};
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

interface FakeOptions {
    states?: Record<string, string>;
    finishFails?: boolean;
    jobs?: V1Job[];
    events?: CoreV1Event[];
}
function fakes(pods: V1Pod[], opts: FakeOptions = {}) {
    const finished: [string, string][] = [];
    const stateReads: string[][] = [];
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
        listWorkerJobs: async () => opts.jobs ?? [],
        listEvents: async (_ns, kind) => (opts.events ?? []).filter((e) => e.involvedObject.kind === kind),
    };
    const stacks = {
        finish: async (_key: string, uuid: string, detail: string) => {
            if (opts.finishFails) throw new Error("Buildkite Stacks API POST /finish: 503");
            finished.push([uuid, detail]);
        },
        jobStates: async (_key: string, uuids: string[]) => {
            stateReads.push(uuids);
            return Object.fromEntries(uuids.map((u) => [u, opts.states?.[u] ?? "scheduled"]));
        },
        notify: async (_key: string, ns: { job_uuid: string }[]) => {
            notified.push(...ns.map((n) => n.job_uuid));
        },
    } as unknown as StacksApi;
    return { jobs, stacks, finished, deleted, notified, stateReads };
}

describe("the workers' sweep (fakes of the Stacks API and the Job client)", () => {
    const settings = settingsFor();
    const stuck = { pendingTimeoutMs: 10 * MIN, startFailureGraceMs: 5 * MIN, intervalMs: MIN };
    const J = (uuid: string) => `${PREFIX}${uuid}`;

    const table: [
        string,
        V1Pod[],
        FakeOptions,
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
                deleted: [J("a")],
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
                deleted: [J("a")],
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
                    metadata: { ...worker("a", "Failed", 2).metadata, name: `${J("a")}-y` },
                },
            ],
            {},
            {
                failed: ["a"],
                deleted: [J("a")],
                kept: [],
                cancelled: [],
                reason: /exited 2 time\(s\) without running the job/,
            },
        ],
        [
            "a pull failing past the grace while the kubelet pulls again (more Pulling than failed): it waits",
            [worker("a", "Pending", 12, pulling("ImagePullBackOff"))],
            {
                events: [
                    event("Pod", `${J("a")}-x`, "Pulling", 'Pulling image "alpine:nope"', 3, "container-0"),
                    event(
                        "Pod",
                        `${J("a")}-x`,
                        "Failed",
                        'Failed to pull image "alpine:nope": not found',
                        2,
                        "container-0",
                    ),
                ],
            },
            { failed: [], deleted: [], kept: [], cancelled: [] },
        ],
        [
            "a pull failing past the grace, one failed attempt only: it waits for a second",
            [worker("a", "Pending", 12, pulling("ImagePullBackOff"))],
            {
                events: [
                    event("Pod", `${J("a")}-x`, "Failed", 'Failed to pull image "alpine:nope": x', 1, "container-0"),
                ],
            },
            { failed: [], deleted: [], kept: [], cancelled: [] },
        ],
        [
            "a pull failing past the grace, two failed attempts and none in progress: failed",
            [worker("a", "Pending", 12, pulling("ImagePullBackOff"))],
            {
                events: [
                    event("Pod", `${J("a")}-x`, "Pulling", 'Pulling image "alpine:nope"', 2, "container-0"),
                    event("Pod", `${J("a")}-x`, "Failed", 'Failed to pull image "alpine:nope": x', 2, "container-0"),
                ],
            },
            { failed: ["a"], deleted: [J("a")], kept: [], cancelled: [], reason: /2 pulls failed/ },
        ],
        [
            "an invalid image name: failed at once, within the grace",
            [worker("a", "Pending", 0, pulling("InvalidImageName"))],
            {},
            {
                failed: ["a"],
                deleted: [J("a")],
                kept: [],
                cancelled: [],
                reason: /InvalidImageName .*no retry can fix/,
            },
        ],
        [
            "an agent that exited 1 while Buildkite still has the job scheduled: failed before it ran the job",
            [worker("a", "Failed", 1, exited(1))],
            {},
            {
                failed: ["a"],
                deleted: [J("a")],
                kept: [],
                cancelled: [],
                reason: /failed before it ran the job: container agent exited 1 \(Error\): fatal: bad token$/,
            },
        ],
        [
            "an agent that exited 1 after running the job (Buildkite has it finished): left alone",
            [worker("a", "Failed", 1, exited(1))],
            { states: { a: "finished" } },
            { failed: [], deleted: [], kept: [], cancelled: [] },
        ],
        [
            "a sidecar crash-looping while the job is still scheduled: failed with its exit",
            [worker("a", "Running", 2, crashLooping)],
            {},
            {
                failed: ["a"],
                deleted: [J("a")],
                kept: [],
                cancelled: [],
                reason: /container dind of the worker keeps crashing \(restarted 4 times, last exit 1 Error\)/,
            },
        ],
        [
            "a Job whose pod the cluster refuses (an admission policy), for 40 s: failed with the API server's words",
            [],
            {
                jobs: [workerJob("a", 40)],
                events: [
                    event(
                        "Job",
                        J("a"),
                        "FailedCreate",
                        'Error creating: pods "x" is forbidden: ValidatingAdmissionPolicy denied request: hostPath',
                    ),
                ],
            },
            {
                failed: ["a"],
                deleted: [J("a")],
                kept: [],
                cancelled: [],
                reason: /the cluster refused the worker pod: pods "x" is forbidden: ValidatingAdmissionPolicy/,
            },
        ],
        [
            "a Job refused a pod for 10 s only: it waits",
            [],
            { jobs: [workerJob("a", 10)], events: [event("Job", J("a"), "FailedCreate", "Error creating: forbidden")] },
            { failed: [], deleted: [], kept: [], cancelled: [] },
        ],
        [
            "a Job refused a pod by the spend cap (exceeded quota): the cap working, it waits",
            [],
            {
                jobs: [workerJob("a", 300)],
                events: [
                    event("Job", J("a"), "FailedCreate", "Error creating: pods is forbidden: exceeded quota: cap"),
                ],
            },
            { failed: [], deleted: [], kept: [], cancelled: [] },
        ],
        [
            "a waiting worker of a job cancelled in Buildkite: deleted, nothing failed",
            [worker("a", "Pending", 1, unschedulable)],
            { states: { a: "canceled" } },
            { failed: [], deleted: [J("a")], kept: [], cancelled: ["a"] },
        ],
    ];
    for (const [name, pods, opts, want] of table)
        it(name, async () => {
            const f = fakes(pods, opts);
            const lines: string[] = [];
            const sweep = createWorkerSweep(settings, f.stacks, f.jobs, "stack", (l) => lines.push(l), stuck);
            const r = await sweep.sweep([]);
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
            // Each job failed is measured, per reason (EMF: the dashboard's "Workers given up on").
            const measured = lines.filter((l) => l.includes('"UnrunnableAfter"'));
            assert.strictEqual(measured.length, want.failed.length);
            for (const l of measured)
                assert.match(l, /"Reason":"(unschedulable|image|container|failed|crash|refused|not-run)"/);
            assert.ok(
                lines.some((l) => l.includes('"msg":"scaledkite.workers"')),
                "a line of worker metrics per queue",
            );
        });

    const strays: [string, (p: V1Pod) => void][] = [
        ["no owner (a pod made by hand with a worker's labels)", (p) => delete p.metadata!.ownerReferences],
        ["owned by a Job of another name", (p) => (p.metadata!.ownerReferences![0].name = "someone-elses-job")],
        ["a job-name label that is not its owner's", (p) => (p.metadata!.labels!["job-name"] = "other")],
        [
            "the label names another job than its Job's name",
            (p) => (p.metadata!.labels!["buildkite.com/job-uuid"] = "b"),
        ],
        ["not managed by Scaledkite", (p) => delete p.metadata!.labels!["app.kubernetes.io/managed-by"]],
    ];
    for (const [name, spoil] of strays)
        it(`a worker-looking pod that is not Scaledkite's is never failed or deleted: ${name}`, async () => {
            const stray = worker("a", "Pending", 30, unschedulable);
            spoil(stray);
            const f = fakes([stray]);
            const r = await createWorkerSweep(settings, f.stacks, f.jobs, "stack", () => {}, stuck).sweep([]);
            assert.deepStrictEqual([r.failed, f.deleted, f.finished], [[], [], []]);
        });

    it("the watch's check reads a failed worker's job state once: a job that ran is not asked about again", async () => {
        const f = fakes([], { states: { a: "finished" } });
        const checks = createWorkerSweep(settings, f.stacks, f.jobs, "stack", () => {}, stuck);
        const pods = [worker("a", "Failed", 1, exited(1))];
        for (let i = 0; i < 3; i++) assert.deepStrictEqual((await checks.check(pods, [])).failed, []);
        assert.deepStrictEqual(f.stateReads, [["a"]]);
    });

    it("the watch's check fails a job once, though the pod stays in its view until the deletion is seen", async () => {
        const f = fakes([]);
        const checks = createWorkerSweep(settings, f.stacks, f.jobs, "stack", () => {}, stuck);
        const pods = [worker("a", "Pending", 0, pulling("InvalidImageName"))];
        assert.deepStrictEqual((await checks.check(pods, [])).failed.length, 1);
        assert.deepStrictEqual((await checks.check(pods, [])).failed.length, 0);
        assert.deepStrictEqual(f.finished.length, 1);
    });
});
