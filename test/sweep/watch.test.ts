/**
 * The sweep's watch (scheduler/sweep/watch.ts) over a fake of the list-and-watch calls: what it holds
 * after adds, changes and deletes, that it resumes from the last resourceVersion after a drop and
 * lists again after 410 Gone, and that it judges what it holds every tick. The real API server's
 * watch is in test/integration/sweep.test.ts.
 */
import * as assert from "assert";
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import type { WorkerWatch } from "../../scheduler/clients/kube";
import type { WatchEvent } from "../../scheduler/clients/watch";
import { watchWorkers } from "../../scheduler/sweep/watch";

const pod = (name: string, rv: string, phase = "Pending"): V1Pod => ({
    metadata: { name, uid: name, resourceVersion: rv },
    status: { phase },
});

/** Scripted answers: each watch call plays the next script (events, then how it ends). */
function fakeWatch(scripts: { events: WatchEvent<V1Pod>[]; end: "timeout" | "drop" | "gone" }[]) {
    const calls: string[] = [];
    let listed = 0;
    const workers: WorkerWatch = {
        async list<T>(_ns: string, resource: string) {
            calls.push(`list ${resource}`);
            if (resource === "pods") listed++;
            return {
                items: (resource === "pods" ? [pod(`listed-${listed}`, "10")] : []) as T[],
                resourceVersion: "10",
            };
        },
        async watch<T>(_ns: string, resource: string, rv: string, onEvent: (e: WatchEvent<T>) => void, until: number) {
            calls.push(`watch ${resource} from ${rv}`);
            const script = resource === "pods" ? scripts.shift() : undefined;
            if (!script) {
                await new Promise((r) => setTimeout(r, Math.max(0, until - Date.now())));
                return { resourceVersion: rv, gone: false };
            }
            await new Promise((r) => setTimeout(r, 5));
            let last = rv;
            for (const e of script.events) {
                onEvent(e as unknown as WatchEvent<T>);
                last = e.object.metadata!.resourceVersion!;
            }
            if (script.end === "drop") throw Object.assign(new Error("socket hang up"), { retryable: true });
            return { resourceVersion: last, gone: script.end === "gone" };
        },
    };
    return { workers, calls };
}

describe("the sweep's watch (fake list and watch)", () => {
    const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.min(ms, 20)));

    it("holds what it listed and was told, resumes after a drop from the last resourceVersion, lists again after 410 Gone", async () => {
        const { workers, calls } = fakeWatch([
            {
                events: [
                    { type: "ADDED", object: pod("a", "11") },
                    { type: "MODIFIED", object: pod("a", "12", "Running") },
                ],
                end: "drop",
            },
            {
                events: [
                    { type: "ADDED", object: pod("b", "13") },
                    { type: "DELETED", object: pod("listed-1", "14") },
                ],
                end: "gone",
            },
            { events: [{ type: "ADDED", object: pod("c", "21") }], end: "timeout" },
        ]);
        const seen: string[][] = [];
        const lines: string[] = [];
        const report = await watchWorkers(
            workers,
            "ns",
            async (pods: V1Pod[], _jobs: V1Job[]) => {
                seen.push(pods.map((p) => `${p.metadata!.name}:${p.status!.phase}`).sort());
                return { failed: [], cancelled: [], kept: [] };
            },
            Date.now() + 400,
            (l) => lines.push(l),
            { tickMs: 10, sleep },
        );
        const podCalls = calls.filter((c) => c.includes("pods"));
        assert.deepStrictEqual(podCalls.slice(0, 5), [
            "list pods",
            "watch pods from 10",
            "watch pods from 12",
            "list pods",
            "watch pods from 10",
        ]);
        assert.strictEqual(report.drops, 1);
        assert.strictEqual(report.lists, 3, "pods twice (start, after Gone) and Jobs once");
        assert.ok(
            lines.some((l) => /the watch dropped; resuming from resourceVersion 12: socket hang up/.test(l)),
            lines.join("\n"),
        );
        // After the relist the view is the new listing plus what came after it; nothing from before remains.
        assert.deepStrictEqual(seen[seen.length - 1], ["c:Pending", "listed-2:Pending"]);
        assert.ok(
            seen.some((s) => s.join() === "a:Running,listed-1:Pending"),
            JSON.stringify(seen),
        );
        assert.ok(report.checks >= 5);
    });

    it("a check that throws is logged and the next tick checks again", async () => {
        const { workers } = fakeWatch([]);
        let n = 0;
        const lines: string[] = [];
        const report = await watchWorkers(
            workers,
            "ns",
            async () => {
                if (n++ === 0) throw new Error("Stacks API 503");
                return { failed: [{ jobUuid: "x", reason: "r" }], cancelled: [], kept: [] };
            },
            Date.now() + 600,
            (l) => lines.push(l),
            { tickMs: 10, sleep },
        );
        assert.ok(
            lines.some((l) => /could not judge the workers: Stacks API 503/.test(l)),
            lines.join("\n"),
        );
        assert.ok(report.checks >= 2 && report.failed === report.checks - 1);
    });
});
