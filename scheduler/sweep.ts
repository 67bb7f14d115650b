/**
 * The sweep: events can be lost, so every few minutes (or on demand) the scheduled jobs of each
 * served queue are listed from Buildkite's Stacks API and pushed through the same idempotent path as
 * the events. A job that already has a worker is left alone (the create answers 409); a lost event
 * costs at most one sweep interval. A queue whose dispatch is paused is left alone.
 */
import { JOB_SCHEDULED } from "./event";
import { createEventHandler, Decision, Logger } from "./handler";
import type { JobClient } from "./kube";
import { SchedulerSettings } from "./settings";
import type { StacksApi, StacksJob } from "./stacksApi";

/** What one sweep did for one queue. */
export interface QueueSweep {
    queue: string;
    listed: number;
    created: number;
    exists: number;
    paused: boolean;
    failed: number;
    error?: string;
}

/** The Stacks API's view of a scheduled job, as the Job Scheduled event the handler takes. Pure. */
export function eventFromStacksJob(job: StacksJob): object {
    return {
        "detail-type": JOB_SCHEDULED,
        id: `sweep-${job.id}`,
        detail: {
            job: { uuid: job.id, type: "script", agent_query_rules: job.agent_query_rules ?? [], label: job.step?.label, step_key: job.step?.key },
            build: { uuid: job.build?.uuid, number: job.build?.number, branch: job.build?.branch, commit: job.build?.commit },
            pipeline: { uuid: job.pipeline?.uuid, slug: job.pipeline?.slug },
        },
    };
}

/** Runs `work` over `items`, at most `limit` at once. */
async function inParallel<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
        while (next < items.length) await work(items[next++]);
    }));
}

/**
 * Makes a sweep for a stack. Each call registers the stack for every served queue (idempotent),
 * lists the queue's scheduled jobs and creates the missing workers; it throws after the last queue if
 * anything failed (so the sweep's error alarm fires), having done all it could.
 */
export function createSweeper(settings: SchedulerSettings, stacks: StacksApi, jobs: JobClient, stackKey: string, log: Logger = (l) => console.log(l)) {
    const handle = createEventHandler(settings, jobs, (line) => log(line.replace(/^\{/, '{"via":"sweep",')));
    return async (): Promise<QueueSweep[]> => {
        const report: QueueSweep[] = [];
        for (const queue of Object.keys(settings.queues)) {
            const r: QueueSweep = { queue, listed: 0, created: 0, exists: 0, paused: false, failed: 0 };
            report.push(r);
            try {
                await stacks.register(stackKey, queue, { scheduler: "scaledkite" });
                const { jobs: scheduled, paused } = await stacks.scheduledJobs(stackKey, queue);
                r.listed = scheduled.length;
                r.paused = paused;
                if (!paused) {
                    await inParallel(scheduled, 10, async (job) => {
                        try {
                            const d: Decision = await handle(eventFromStacksJob(job));
                            if (d.outcome === "created") r.created++;
                            else if (d.outcome === "exists") r.exists++;
                        } catch {
                            r.failed++;
                        }
                    });
                }
            } catch (e) {
                r.failed++;
                r.error = (e as Error).message;
            }
            log(JSON.stringify({ msg: "scaledkite.sweep", ...r }));
        }
        const failures = report.filter((r) => r.failed > 0);
        if (failures.length) {
            // The next sweep tries again; the error makes the failure visible (log line, error alarm).
            throw new Error(`sweep: ${failures.map((f) => `queue ${f.queue}: ${f.error ?? `${f.failed} job(s) failed`}`).join("; ")}`);
        }
        return report;
    };
}
