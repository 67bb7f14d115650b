/**
 * The sweep's queue half (scheduler/sweep/lambda.ts createSweeper) with fakes of the Stacks API and
 * the Job client: what it lists it reserves in one call, makes workers only for the jobs it got, and
 * reports what it did. The real API server and the Stacks API stand-in are in
 * test/integration/sweep.test.ts and capacity.test.ts.
 */
import * as assert from "assert";
import type { V1Job } from "@kubernetes/client-node";
import type { JobClient } from "../../scheduler/clients/kube";
import type { StacksApi, StacksJob } from "../../scheduler/clients/stacksApi";
import { createSweeper } from "../../scheduler/sweep/lambda";
import { aStacksJob, settingsFor } from "../helpers/builders";

function fakes(listed: StacksJob[], heldElsewhere: Set<string>, reserveFails = false) {
    const reserveCalls: string[][] = [];
    const created: string[] = [];
    const stacks = {
        register: async () => {},
        scheduledJobs: async () => ({ jobs: listed, paused: false }),
        reserve: async (_key: string, uuids: string[]) => {
            reserveCalls.push(uuids);
            if (reserveFails) throw Object.assign(new Error("Buildkite Stacks API: 503"), { retryable: true });
            return {
                reserved: uuids.filter((u) => !heldElsewhere.has(u)),
                notReserved: uuids.filter((u) => heldElsewhere.has(u)),
            };
        },
        jobStates: async (_key: string, uuids: string[]) => Object.fromEntries(uuids.map((u) => [u, "scheduled"])),
        finish: async () => {},
        notify: async () => {},
    } as unknown as StacksApi;
    const jobs: JobClient = {
        server: "https://k8s.example",
        createJob: async (job: V1Job) => {
            created.push(job.metadata!.labels!["buildkite.com/job-uuid"]);
            return "created";
        },
        deleteJob: async () => "deleted",
        listWorkerPods: async () => [],
        listWorkerJobs: async () => [],
        listEvents: async () => [],
    };
    return { stacks, jobs, reserveCalls, created };
}

describe("the sweep's listing (fakes of the Stacks API and the Job client)", () => {
    const settings = settingsFor({ queues: { dynamic: {} } });

    it("reserves the 25 jobs it listed in one call and makes workers for the 20 it got", async () => {
        const listed = Array.from({ length: 25 }, () => aStacksJob("dynamic"));
        const elsewhere = new Set(listed.slice(0, 5).map((j) => j.id));
        const f = fakes(listed, elsewhere);
        const r = await createSweeper(settings, f.stacks, f.jobs, "scaledkite-a", () => {})();
        assert.deepStrictEqual(f.reserveCalls.length, 1, "one reserve call for the listing");
        assert.deepStrictEqual(f.reserveCalls[0].sort(), listed.map((j) => j.id).sort());
        assert.deepStrictEqual(
            f.created.sort(),
            listed
                .slice(5)
                .map((j) => j.id)
                .sort(),
        );
        assert.strictEqual(r.queues[0].listed, 25);
        assert.strictEqual(r.queues[0].created, 20);
        assert.strictEqual(r.queues[0].failed, 0);
    });

    it("when reserving fails, it makes no worker and fails with the count (its alarm; the next sweep tries again)", async () => {
        const listed = Array.from({ length: 3 }, () => aStacksJob("dynamic"));
        const f = fakes(listed, new Set(), true);
        const lines: string[] = [];
        await assert.rejects(
            createSweeper(settings, f.stacks, f.jobs, "scaledkite-a", (l) => lines.push(l))(),
            /sweep: queue dynamic: 3 job\(s\) failed/,
        );
        assert.deepStrictEqual(f.created, []);
        const queueLine = lines.map((l) => JSON.parse(l)).find((l) => l.msg === "scaledkite.sweep" && l.queue);
        assert.strictEqual(queueLine.failed, 3);
        assert.strictEqual(f.reserveCalls.length, 2, "the listing's call, then one for the jobs asking again together");
    });
});
