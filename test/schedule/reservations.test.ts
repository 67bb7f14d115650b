/**
 * Reservations against the Stacks API's limit of 10 reserve calls a second per stack: an SQS batch
 * of events costs one call, the sweep's listing one call, and a job another stack holds gets no
 * worker and no word to Buildkite. The Stacks API here is a fake that counts calls; its real
 * contract (and its rate limit) is the stand-in's, exercised in test/integration/capacity.test.ts.
 */
import * as assert from "assert";
import type { V1Job } from "@kubernetes/client-node";
import type { JobClient } from "../../scheduler/clients/kube";
import type { StacksApi } from "../../scheduler/clients/stacksApi";
import { classifiedError, isRetryable } from "../../scheduler/core/errors";
import { handleBatch, type SqsRecord } from "../../scheduler/schedule/batch";
import { createEventHandler } from "../../scheduler/schedule/lambda";
import {
    batchedReservations,
    RESERVATION_ANSWER_MS,
    RESERVATION_SECONDS,
    stacksStepSource,
} from "../../scheduler/schedule/stepSource";
import { anEvent, settingsFor } from "../helpers/builders";

/** A Stacks API whose reserve answers from `others` (jobs another stack holds) and counts its calls. */
function fakeStacks(others: Set<string> = new Set(), fail?: unknown) {
    const calls: { uuids: string[]; seconds: number }[] = [];
    const finished: string[] = [];
    const api = {
        async reserve(_key: string, uuids: string[], seconds: number) {
            calls.push({ uuids, seconds });
            if (fail) throw fail;
            return { reserved: uuids.filter((u) => !others.has(u)), notReserved: uuids.filter((u) => others.has(u)) };
        },
        async job() {
            return { id: "x", env: {}, command: "make" };
        },
        async finish(_key: string, uuid: string) {
            finished.push(uuid);
        },
        async notify() {},
    } as unknown as StacksApi;
    return { api, calls, finished };
}

function jobClient(): JobClient & { created: V1Job[] } {
    const created: V1Job[] = [];
    return {
        server: "https://k8s.example",
        created,
        async createJob(job) {
            created.push(job);
            return "created";
        },
        async deleteJob() {
            return "deleted";
        },
    };
}

const record = (event: unknown, i: number): SqsRecord => ({
    messageId: `m${i}`,
    body: JSON.stringify(event),
    eventSource: "aws:sqs",
});

describe("reservations in batches", () => {
    const settings = settingsFor({ queues: { dynamic: {} } });

    it("an SQS batch of 10 events reserves its jobs in one call, and only the jobs it got have workers", async () => {
        const events = Array.from({ length: 10 }, () => anEvent().build());
        const uuids = events.map((e) => e.detail.job.uuid);
        const stacks = fakeStacks(new Set(uuids.slice(0, 3)));
        const jobs = jobClient();
        const lines: string[] = [];
        const handle = createEventHandler(settings, jobs, (l) => lines.push(l), {
            steps: stacksStepSource(stacks.api, "scaledkite-a"),
        });
        const r = await handleBatch(events.map(record), handle);
        assert.deepStrictEqual(r.batchItemFailures, []);
        assert.strictEqual(stacks.calls.length, 1, "one reserve call");
        assert.deepStrictEqual(stacks.calls[0].uuids.sort(), [...uuids].sort());
        assert.strictEqual(stacks.calls[0].seconds, RESERVATION_SECONDS);
        assert.deepStrictEqual(
            jobs.created.map((j) => j.metadata!.labels!["buildkite.com/job-uuid"]).sort(),
            uuids.slice(3).sort(),
        );
        const ignored = lines.map((l) => JSON.parse(l)).filter((l) => l.outcome === "ignored");
        assert.deepStrictEqual(ignored.map((l) => l.jobUuid).sort(), uuids.slice(0, 3).sort());
        assert.match(ignored[0].reason, /another stack reserved this job/);
        assert.deepStrictEqual(stacks.finished, [], "nothing said to Buildkite about jobs another stack holds");
    });

    it("a reservation that fails in a way worth retrying keeps every record of the batch in the queue", async () => {
        const events = Array.from({ length: 4 }, () => anEvent().build());
        const stacks = fakeStacks(new Set(), classifiedError("stacks-api", "StacksApiError", "429", true));
        const jobs = jobClient();
        const handle = createEventHandler(settings, jobs, () => {}, {
            steps: stacksStepSource(stacks.api, "scaledkite-a"),
        });
        const r = await handleBatch(events.map(record), handle);
        assert.strictEqual(r.batchItemFailures.length, 4);
        assert.strictEqual(stacks.calls.length, 1);
        assert.deepStrictEqual(jobs.created, []);
    });

    it("reserveAll asks once per 1,000 jobs, and reserve then answers from it until the answer is old", async () => {
        let now = 1_000_000;
        const uuids = Array.from({ length: 1500 }, (_, i) => `0190-${String(i).padStart(4, "0")}`);
        const stacks = fakeStacks(new Set([uuids[7]]));
        const r = batchedReservations(stacks.api, "scaledkite-a", () => now);
        await r.reserveAll(uuids);
        assert.deepStrictEqual(
            stacks.calls.map((c) => c.uuids.length),
            [1000, 500],
        );
        assert.strictEqual(await r.reserve(uuids[3]), true);
        assert.strictEqual(await r.reserve(uuids[7]), false);
        assert.strictEqual(await r.reserve(uuids[1499].toUpperCase()), true, "uuids compare without case");
        assert.strictEqual(stacks.calls.length, 2, "answered without another call");
        now += RESERVATION_ANSWER_MS;
        assert.strictEqual(await r.reserve(uuids[3]), true);
        assert.strictEqual(stacks.calls.length, 3, "an old answer is asked again");
    });

    it("a failed call rejects every reservation waiting on it with the same classified error", async () => {
        const stacks = fakeStacks(new Set(), classifiedError("stacks-api", "StacksApiError", "503", true));
        const r = batchedReservations(stacks.api, "scaledkite-a");
        const got = await Promise.allSettled([r.reserve("a"), r.reserve("b")]);
        assert.strictEqual(stacks.calls.length, 1);
        for (const g of got) {
            assert.strictEqual(g.status, "rejected");
            assert.ok(isRetryable((g as PromiseRejectedResult).reason));
        }
    });
});
