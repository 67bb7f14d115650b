/**
 * The sweep's watch: between its per-minute listings the sweep Lambda holds a watch on the workers'
 * pods and Jobs and judges them every second (workers.ts, `check`), so a worker that will never run
 * is failed in Buildkite within seconds of the kubelet or the Job controller saying so, not at the
 * next sweep. It keeps the objects it was told about in memory, as an informer does: it lists once,
 * then watches from the list's resourceVersion; when the watch drops it resumes from the last
 * resourceVersion it saw, and when the server has forgotten that one (410 Gone) it lists again. The
 * per-minute sweep stays the safety net for anything the watch missed.
 */
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import type { WorkerWatch } from "../clients/kube";
import { jsonLine, type Logger } from "../clients/log";
import type { WatchEvent } from "../clients/watch";
import type { WorkerSweep } from "./workers";

/** What one watch did: events seen, lists made, drops survived, checks run, jobs failed. */
export interface WatchReport {
    events: number;
    lists: number;
    drops: number;
    checks: number;
    failed: number;
}

export interface WatchOptions {
    /** How often the held workers are judged. */
    tickMs?: number;
    sleep?: (ms: number) => Promise<void>;
    /** Ends the watch before `until`. */
    signal?: AbortSignal;
}

type Watched = { metadata?: { uid?: string; name?: string } };

/** Holds the watch until `until` (epoch ms), calling `check` with the pods and Jobs held, every tick. */
export async function watchWorkers(
    workers: WorkerWatch,
    namespace: string,
    check: (pods: V1Pod[], jobs: V1Job[]) => Promise<WorkerSweep>,
    until: number,
    log: Logger,
    { tickMs = 1_000, sleep = (ms) => new Promise((r) => setTimeout(r, ms)), signal }: WatchOptions = {},
): Promise<WatchReport> {
    const report: WatchReport = { events: 0, lists: 0, drops: 0, checks: 0, failed: 0 };
    const pods = new Map<string, V1Pod>();
    const jobs = new Map<string, V1Job>();
    let ready = 0;
    const going = (margin = 0) => !signal?.aborted && Date.now() < until - margin;

    async function follow<T extends Watched>(resource: string, held: Map<string, T>) {
        const key = (o: T) => o.metadata?.uid ?? o.metadata?.name ?? "";
        let rv: string | undefined;
        let listed = false;
        while (going(250)) {
            try {
                if (rv === undefined) {
                    const l = await workers.list<T>(namespace, resource);
                    held.clear();
                    for (const item of l.items) held.set(key(item), item);
                    rv = l.resourceVersion;
                    report.lists++;
                    if (!listed) ready++;
                    listed = true;
                }
                const end = await workers.watch<T>(
                    namespace,
                    resource,
                    rv,
                    (e: WatchEvent<T & { metadata?: { resourceVersion?: string } }>) => {
                        report.events++;
                        // A drop resumes from the last event handled.
                        rv = e.object.metadata?.resourceVersion ?? rv;
                        if (e.type === "DELETED") held.delete(key(e.object));
                        else if (e.type === "ADDED" || e.type === "MODIFIED") held.set(key(e.object), e.object);
                    },
                    until,
                    signal,
                );
                rv = end.gone ? undefined : end.resourceVersion;
            } catch (e) {
                report.drops++;
                if ((e as { status?: number }).status === 410) rv = undefined;
                log(
                    jsonLine({
                        msg: "scaledkite.watch",
                        resource,
                        warning: `the watch dropped; resuming ${rv === undefined ? "with a new listing" : `from resourceVersion ${rv}`}: ${(e as Error).message}`,
                    }),
                );
                if (going()) await sleep(Math.min(1_000, Math.max(0, until - Date.now())));
            }
        }
    }

    async function judge() {
        while (going()) {
            await sleep(Math.min(tickMs, Math.max(0, until - Date.now())));
            if (ready < 2 || !going()) continue;
            try {
                report.checks++;
                report.failed += (await check([...pods.values()], [...jobs.values()])).failed.length;
            } catch (e) {
                log(
                    jsonLine({
                        msg: "scaledkite.watch",
                        warning: `could not judge the workers: ${(e as Error).message}`,
                    }),
                );
            }
        }
    }

    await Promise.all([follow("pods", pods), follow("batch/v1/jobs", jobs), judge()]);
    return report;
}
