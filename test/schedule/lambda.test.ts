/**
 * What the handler decides for each kind of event (pure), and what it does with the answer of the
 * Job client: the Kubernetes answers themselves are exercised against the real API server in
 * test/integration.
 */
import * as assert from "assert";
import type { V1Job } from "@kubernetes/client-node";
import { kubernetesError } from "../../scheduler/core/errors";
import { createEventHandler, decide } from "../../scheduler/schedule/lambda";
import { jsonLine, MAX_LOGGED_TEXT } from "../../scheduler/clients/log";
import { type JobClient } from "../../scheduler/clients/kube";
import { anEvent, settingsFor } from "../helpers/builders";

describe("decide", () => {
    const settings = settingsFor({ queues: { dynamic: {}, "docker-free": {} } });
    const finished = () =>
        anEvent()
            .detailType("Job Finished")
            .with((e) => {
                e.detail.job.started_at = null;
                e.detail.job.signal_reason = "cancel";
            });
    const cases: [string, unknown, string, RegExp][] = [
        ["a scheduled job of a served queue", anEvent().build(), "schedule", /job targets queue dynamic/],
        ["a scheduled job of another queue", anEvent().queue("gpu").build(), "ignored", /does not serve/],
        [
            "a scheduled job with no command (a wait step)",
            anEvent().type("waiter").build(),
            "ignored",
            /runs no command/,
        ],
        ["a job finished before it started", finished().build(), "cancel", /finished before it started \(cancel\)/],
        [
            "a job finished after it ran",
            finished()
                .with((e) => (e.detail.job.started_at = "2024-08-19 07:04:00 UTC"))
                .build(),
            "ignored",
            /the job ran/,
        ],
        [
            "a job of another queue finished before it started",
            finished().queue("gpu").build(),
            "ignored",
            /does not serve/,
        ],
        ["another detail-type", anEvent().detailType("Build Started").build(), "ignored", /is not "Job Scheduled"/],
        ["garbage", "][", "invalid", /not valid JSON/],
    ];
    for (const [name, event, outcome, reason] of cases) {
        it(name, () => {
            const d = decide(settings, event);
            assert.strictEqual(d.outcome, outcome);
            assert.match(d.reason, reason);
        });
    }
});

/** A JobClient that answers from a script: enough to see what the handler does with each answer. */
function scripted(answers: {
    create?: () => Promise<"created" | "exists">;
    remove?: () => Promise<"deleted" | "absent">;
}): JobClient & { created: V1Job[] } {
    const created: V1Job[] = [];
    return {
        server: "https://k8s.example",
        created,
        async createJob(job) {
            created.push(job);
            return (answers.create ?? (async () => "created"))();
        },
        async deleteJob() {
            return (answers.remove ?? (async () => "deleted"))();
        },
    };
}

describe("createEventHandler", () => {
    const settings = settingsFor();
    it("logs one JSON line per event with the job, queue, outcome and time", async () => {
        const lines: string[] = [];
        await createEventHandler(settings, scripted({}), (l) => lines.push(l))(
            anEvent().uuid("9e6c3f19-4fdb-4e8e-b925-28cd7504e17f").build(),
        );
        assert.strictEqual(lines.length, 1);
        const line = JSON.parse(lines[0]);
        assert.deepStrictEqual(Object.keys(line).sort(), [
            "Events",
            "Namespace",
            "Outcome",
            "Queue",
            "ScheduleDelay",
            "_aws",
            "delayMs",
            "job",
            "jobUuid",
            "ms",
            "msg",
            "outcome",
            "queue",
            "reason",
        ]);
        assert.strictEqual(line.job, "buildkite/buildkite-agent-9e6c3f19-4fdb-4e8e-b925-28cd7504e17f");
        assert.deepStrictEqual(
            [line.Namespace, line.Queue, line.Outcome, line.Events],
            ["buildkite", "dynamic", "created", 1],
            "its metrics (test/metrics.test.ts)",
        );
    });

    it("throws a retryable failure after logging it, and returns the rest", async () => {
        const lines: string[] = [];
        const handle = createEventHandler(
            settings,
            scripted({
                create: async () => {
                    throw kubernetesError("quota", true, 403);
                },
            }),
            (l) => lines.push(l),
        );
        await assert.rejects(handle(anEvent().build()), (e: Error) => {
            assert.match(e.message, /quota/);
            assert.ok(!e.stack!.includes("\n"), "Lambda reports the stack: it is the one line");
            return true;
        });
        assert.match(lines[0], /"outcome":"failed".*"retryable":true/);
        assert.strictEqual((await handle({})).outcome, "invalid");
    });

    it("reports a cancelled job with no worker as nothing to do", async () => {
        const handle = createEventHandler(settings, scripted({ remove: async () => "absent" }), () => {});
        const d = await handle(anEvent().detailType("Job Finished").build());
        assert.strictEqual(d.outcome, "ignored");
        assert.match(d.reason, /had no worker/);
    });
});

describe("the Lambdas' log lines", () => {
    it("are written to stdout as raw JSON lines (console.log would get Lambda's text prefix, which no JSON metric filter reads)", async () => {
        const written: string[] = [];
        const write = process.stdout.write.bind(process.stdout);
        const log = console.log;
        (process.stdout as { write: unknown }).write = (chunk: string) => {
            written.push(String(chunk));
            return true;
        };
        console.log = () => {
            throw new Error("console.log was used");
        };
        try {
            await createEventHandler(settingsFor(), scripted({}))(anEvent().queue("gpu").build());
        } finally {
            (process.stdout as { write: unknown }).write = write;
            console.log = log;
        }
        assert.strictEqual(written.length, 1);
        assert.ok(written[0].endsWith("\n") && !written[0].slice(0, -1).includes("\n"), "one line");
        assert.deepStrictEqual(
            [JSON.parse(written[0]).msg, JSON.parse(written[0]).outcome],
            ["scaledkite.schedule", "ignored"],
        );
    });

    it("cut an event's attacker-sized text, saying how much was cut", async () => {
        const lines: string[] = [];
        const rule = `queue=${"q".repeat(15_000)}`;
        await createEventHandler(settingsFor(), scripted({}), (l) => lines.push(l))(anEvent().rules([rule]).build());
        assert.ok(
            lines[0].length < MAX_LOGGED_TEXT + 600,
            `${lines[0].length} characters (the text, the fields and the metrics directive)`,
        );
        const reason: string = JSON.parse(lines[0]).reason;
        assert.match(reason, /^job targets queue=q+… \(\d+ more characters\)$/);
        assert.strictEqual(jsonLine({ a: "short", n: 3 }), '{"a":"short","n":3}');
    });
});
