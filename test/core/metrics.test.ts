/** The metrics the Lambdas' log lines carry (CloudWatch Embedded Metric Format), and what they are computed from. */
import * as assert from "assert";
import type { V1Pod } from "@kubernetes/client-node";
import { isoTime } from "../../scheduler/core/event";
import { createEventHandler, decisionLine } from "../../scheduler/schedule/lambda";
import type { JobClient } from "../../scheduler/clients/kube";
import { msSince, withMetrics } from "../../scheduler/core/metrics";
import { workerStats } from "../../scheduler/core/workerStats";
import { anEvent, settingsFor } from "../helpers/builders";
import { parseEmf } from "../helpers/emf";

const jobs = (): JobClient =>
    ({ createJob: async () => "created", deleteJob: async () => "deleted" }) as unknown as JobClient;

describe("metrics (Embedded Metric Format)", () => {
    it("counts each event by queue and outcome, and a created worker's delay since the job became runnable", async () => {
        const lines: string[] = [];
        const settings = settingsFor();
        const runnable = new Date(Date.now() - 2500).toISOString();
        await createEventHandler(settings, jobs(), (l) => lines.push(l))(anEvent().runnableAt(runnable).build());
        await createEventHandler(settings, jobs(), (l) => lines.push(l))({ "detail-type": "Job Scheduled" });
        const created = parseEmf(lines[0]);
        assert.deepStrictEqual(created.dimensions, { Namespace: "buildkite", Queue: "dynamic", Outcome: "created" });
        assert.deepStrictEqual(created.metrics.Events, { unit: "Count", value: 1 });
        const delay = created.metrics.ScheduleDelay;
        assert.strictEqual(delay.unit, "Milliseconds");
        assert.ok((delay.value as number) >= 2500 && (delay.value as number) < 10_000, `delay ${delay.value} ms`);
        const invalid = parseEmf(lines[1]);
        assert.deepStrictEqual(invalid.dimensions, { Namespace: "buildkite", Queue: "none", Outcome: "invalid" });
        assert.strictEqual(invalid.metrics.ScheduleDelay, undefined, "only a created worker has a delay");
    });

    it("the sweep's own handler lines carry no metrics (the sweep counts what it did)", async () => {
        const lines: string[] = [];
        await createEventHandler(settingsFor(), jobs(), (l) => lines.push(l), { via: "sweep" })(anEvent().build());
        assert.ok(lines[0].startsWith('{"via":"sweep","msg":"scaledkite.schedule"'));
        assert.ok(!("_aws" in JSON.parse(lines[0])));
    });

    it("a failed event is counted with its outcome, retryable or not", () => {
        const { dimensions } = parseEmf(
            decisionLine("ci", { outcome: "failed", reason: "quota", queue: "big", ms: 3 }, 1_000),
        );
        assert.deepStrictEqual(dimensions, { Namespace: "ci", Queue: "big", Outcome: "failed" });
    });

    it("keeps at most 100 values per metric and leaves out empty distributions", () => {
        const line = withMetrics(
            { msg: "x" },
            { Queue: "q" },
            [
                { name: "Many", unit: "Milliseconds", value: Array.from({ length: 250 }, (_, i) => i) },
                { name: "None", unit: "Milliseconds", value: [] },
            ],
            5,
        );
        assert.strictEqual((line.Many as number[]).length, 100);
        assert.ok(!("None" in line));
        assert.deepStrictEqual(
            withMetrics({ msg: "x" }, { Queue: "q" }, [{ name: "None", unit: "Count", value: [] }], 5),
            { msg: "x" },
            "no metric, no directive",
        );
    });

    const times: [string, unknown, string | undefined][] = [
        ["Buildkite's own format", "2019-08-11 06:01:14 UTC", "2019-08-11T06:01:14.000Z"],
        ["ISO 8601", "2026-11-28T10:00:00Z", "2026-11-28T10:00:00.000Z"],
        ["not a time", "yesterday-ish", undefined],
        ["not a string", 12, undefined],
    ];
    for (const [name, value, want] of times)
        it(`reads a runnable_at in ${name}`, () => assert.strictEqual(isoTime(value), want));

    it("measures nothing from a time that is missing or in the future", () => {
        assert.strictEqual(msSince(undefined, 1000), undefined);
        assert.strictEqual(msSince(new Date(10 * 60_000).toISOString(), 0), undefined);
        assert.strictEqual(msSince(new Date(0).toISOString(), 1500), 1500);
    });
});

/** A worker pod as the sweep lists it. */
function pod(
    queue: string,
    phase: string,
    opts: { runnableAt?: string; agentStartedAt?: string; finished?: boolean; deleting?: boolean } = {},
): V1Pod {
    const state = opts.agentStartedAt
        ? opts.finished
            ? { terminated: { startedAt: new Date(opts.agentStartedAt), exitCode: 0 } }
            : { running: { startedAt: new Date(opts.agentStartedAt) } }
        : { waiting: { reason: "ContainerCreating" } };
    return {
        metadata: {
            annotations: {
                "scaledkite.io/queue": queue,
                ...(opts.runnableAt ? { "scaledkite.io/runnable-at": opts.runnableAt } : {}),
            },
            ...(opts.deleting ? { deletionTimestamp: new Date() } : {}),
        },
        status: { phase, containerStatuses: [{ name: "agent", state } as never] },
    };
}

describe("workerStats", () => {
    const now = new Date("2026-11-28T12:00:00Z");
    const table: [string, V1Pod[], Record<string, { running: number; pending: number; startLatencyMs: number[] }>][] = [
        [
            "a worker whose agent started in the last minute: its start latency from runnable",
            [pod("a", "Running", { runnableAt: "2026-11-28T11:59:30Z", agentStartedAt: "2026-11-28T11:59:42Z" })],
            { a: { running: 1, pending: 0, startLatencyMs: [12_000] } },
        ],
        [
            "one that started before the window was measured by an earlier sweep",
            [pod("a", "Running", { runnableAt: "2026-11-28T11:50:00Z", agentStartedAt: "2026-11-28T11:58:59Z" })],
            { a: { running: 1, pending: 0, startLatencyMs: [] } },
        ],
        [
            "one that started and already finished within the window still counts",
            [
                pod("a", "Succeeded", {
                    runnableAt: "2026-11-28T11:59:40Z",
                    agentStartedAt: "2026-11-28T11:59:41Z",
                    finished: true,
                }),
            ],
            { a: { running: 0, pending: 0, startLatencyMs: [1000] } },
        ],
        [
            "pending workers by queue; no start, no latency",
            [pod("a", "Pending"), pod("b", "Pending"), pod("b", "Pending", { runnableAt: "2026-11-28T11:59:00Z" })],
            { a: { running: 0, pending: 1, startLatencyMs: [] }, b: { running: 0, pending: 2, startLatencyMs: [] } },
        ],
        [
            "no runnable-at annotation (a Job made before this version): counted, not measured",
            [pod("a", "Running", { agentStartedAt: "2026-11-28T11:59:42Z" })],
            { a: { running: 1, pending: 0, startLatencyMs: [] } },
        ],
        [
            "pods being deleted are not counted",
            [
                pod("a", "Running", {
                    deleting: true,
                    runnableAt: "2026-11-28T11:59:30Z",
                    agentStartedAt: "2026-11-28T11:59:42Z",
                }),
            ],
            {},
        ],
    ];
    for (const [name, pods, want] of table) {
        it(name, () => assert.deepStrictEqual(Object.fromEntries(workerStats(pods, now, 60_000)), want));
    }
});
