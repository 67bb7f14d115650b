/**
 * The sweep's second half, the workers. `check` (each second from the watch, and in each sweep) fails
 * in Buildkite, then deletes, the Scaledkite workers (core/workerIdentity.ts) that will never run
 * (core/stuck.ts), one that failed before its agent ran the job only while Buildkite has it scheduled; a
 * failed `finish` keeps the worker. `sweep` also reports (workerReports.ts) and deletes workers of done jobs.
 */
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import { jsonLine, type Logger } from "../clients/log";
import type { JobClient } from "../clients/kube";
import type { StacksApi } from "../clients/stacksApi";
import { describeFailure, RETRY_WORDS } from "../core/errors";
import { METRICS, withMetrics } from "../core/metrics";
import type { DeferredJob } from "../core/notices";
import { queueSettings, type SchedulerSettings } from "../core/settings";
import { type Cause, judgeWorker, needsHistory, noPodReason, notRunReason, type StuckOptions } from "../core/stuck";
import { emptyHistory, type PodHistory, podHistory } from "../core/podHistory";
import { jobIdentity, podIdentity, type WorkerIdentity } from "../core/workerIdentity";
import { createWorkerReports, type Waiting } from "./workerReports";

/** What one sweep did about workers that will never run or are no longer needed. */
export interface WorkerSweep {
    failed: { jobUuid: string; reason: string }[];
    cancelled: string[];
    /** Per queue: workers given up on and workers of done jobs deleted (for the metrics). */
    byQueue?: Record<string, { failedStuck: number; deletedCancelled: number }>;
    /** Timeline messages sent to Buildkite about jobs still waiting for their worker. */
    notified?: number;
    /** Workers that will never run but were kept because failing their job in Buildkite did not succeed (the next check tries again). */
    kept: { jobUuid: string; error: string }[];
}

/** Buildkite job states in which a waiting worker is no longer needed. */
const DONE_STATES = ["canceled", "canceling", "finished", "expired", "timed_out", "skipped", "broken"];
/** How long a job given up on is not judged again (its Job is being deleted). */
const GIVEN_UP_MS = 10 * 60_000;
/** How long the kubelet's events, once read, stand for the next checks. */
const HISTORY_MS = 3_000;

export interface WorkerChecks {
    /** Judges the given pods and Jobs and gives up on what will never run. */
    check(pods: V1Pod[], jobs: V1Job[] | undefined, now?: Date): Promise<WorkerSweep>;
    /** The per-minute sweep: lists the workers, checks them, logs metrics, posts wait notices, deletes workers of done jobs. */
    sweep(deferred: DeferredJob[]): Promise<WorkerSweep>;
}

/**
 * Makes the workers' checks for a stack. They throw only when the workers cannot be listed (or the
 * jobs' states cannot be read for the sweep), having done what they could.
 */
export function createWorkerSweep(
    settings: SchedulerSettings,
    stacks: StacksApi,
    jobs: JobClient,
    stackKey: string,
    log: Logger,
    stuck: StuckOptions & { intervalMs: number },
): WorkerChecks {
    const { namespace, jobPrefix } = settings;
    const reports = createWorkerReports(settings, stacks, stackKey, log, stuck.intervalMs);
    const givenUp = new Map<string, number>();
    /** Pods (uid) that failed after their job left the scheduled state: nothing more to judge. */
    const settled = new Set<string>();
    let history: { at: number; value: PodHistory | undefined } | undefined;
    const fresh = (): WorkerSweep => ({ failed: [], cancelled: [], kept: [], byQueue: {} });

    /** Fails the job in Buildkite, then deletes its worker; `since`: when the worker (its pod, or its Job) was made. */
    async function giveUp(
        result: WorkerSweep,
        id: WorkerIdentity,
        why: { reason: string; cause: Cause; since?: string | Date },
        waiting: Waiting[],
        pod?: V1Pod,
    ) {
        const { reason, cause } = why;
        try {
            await stacks.finish(stackKey, id.uuid, `Scaledkite: ${reason}`);
        } catch (e) {
            // The worker stays until Buildkite knows why the job failed: deleting it first would
            // only make the next sweep create another. A job that is already done is found by the sweep.
            const error = describeFailure(e, RETRY_WORDS.sweep);
            result.kept.push({ jobUuid: id.uuid, error });
            if (pod) waiting.push({ ...id, pod, reason });
            log(
                jsonLine({
                    msg: "scaledkite.sweep",
                    outcome: "kept",
                    jobUuid: id.uuid,
                    job: `${namespace}/${id.jobName}`,
                    reason,
                    warning: `could not fail the job in Buildkite, so its worker stays: ${error}`,
                }),
            );
            return;
        }
        givenUp.set(id.uuid, Date.now());
        await jobs.deleteJob(namespace, id.jobName);
        result.failed.push({ jobUuid: id.uuid, reason });
        if (queueSettings(settings, id.queue)) {
            const q = (result.byQueue![id.queue!] ??= { failedStuck: 0, deletedCancelled: 0 });
            q.failedStuck++;
        }
        const created = Date.parse(String(why.since ?? pod?.metadata?.creationTimestamp ?? ""));
        const after = Number.isNaN(created) ? [] : [Date.now() - created];
        log(
            jsonLine(
                withMetrics(
                    {
                        msg: "scaledkite.sweep",
                        outcome: "unrunnable",
                        jobUuid: id.uuid,
                        job: `${namespace}/${id.jobName}`,
                        reason,
                        cause,
                        ...(after.length ? { sinceCreatedMs: after[0] } : {}),
                    },
                    { Namespace: namespace, Reason: cause },
                    [{ name: METRICS.unrunnableAfter, unit: "Milliseconds", value: after }],
                    Date.now(),
                ),
            ),
        );
    }

    /** The events about the pods, read only when a worker's start failure or its wait has lasted its limit (cached briefly). */
    async function podEvents(pods: V1Pod[], now: Date): Promise<PodHistory | undefined> {
        if (!jobs.listEvents || !pods.some((p) => needsHistory(p, now, stuck))) return emptyHistory();
        if (history && Date.now() - history.at < HISTORY_MS) return history.value;
        let value: PodHistory | undefined;
        try {
            value = podHistory(await jobs.listEvents(namespace, "Pod"));
        } catch (e) {
            log(
                jsonLine({
                    msg: "scaledkite.sweep",
                    warning: `could not read the worker pods' events, so image pulls are judged by the grace alone: ${(e as Error).message}`,
                }),
            );
        }
        history = { at: Date.now(), value };
        return value;
    }

    async function check(pods: V1Pod[], workerJobs: V1Job[] | undefined, now = new Date()) {
        const result = fresh();
        await checkWorkers(result, pods, workerJobs, now);
        return result;
    }

    async function checkWorkers(
        result: WorkerSweep,
        pods: V1Pod[],
        workerJobs: V1Job[] | undefined,
        now: Date,
    ): Promise<Waiting[]> {
        for (const [uuid, at] of givenUp) if (Date.now() - at > GIVEN_UP_MS) givenUp.delete(uuid);
        const uids = new Set(pods.map((p) => p.metadata?.uid));
        for (const uid of settled) if (!uids.has(uid)) settled.delete(uid);
        const owned = pods.flatMap((pod) => {
            const id = podIdentity(pod, jobPrefix);
            return id && !givenUp.has(id.uuid) && !settled.has(pod.metadata?.uid ?? "") ? [{ ...id, pod }] : [];
        });
        const events = await podEvents(
            owned.map((o) => o.pod),
            now,
        );
        const waiting: Waiting[] = [];
        const unsure: (Waiting & { uid: string; cause: Cause })[] = [];
        const done = new Set<string>();
        for (const w of owned) {
            const state = judgeWorker(w.pod, now, stuck, events);
            if (state.kind === "waiting") waiting.push({ ...w, reason: state.reason });
            else if (state.kind === "beforeAcquire")
                unsure.push({ ...w, reason: state.reason, cause: state.cause, uid: w.pod.metadata?.uid ?? "" });
            else if (state.kind === "unrunnable" && !done.has(w.uuid)) {
                done.add(w.uuid);
                await giveUp(result, w, state, waiting, w.pod);
            }
        }
        // Workers whose agents could not acquire their job, as many times as the Job allows.
        const byJob = new Map<string, typeof owned>();
        for (const w of owned) byJob.set(w.jobName, [...(byJob.get(w.jobName) ?? []), w]);
        for (const group of byJob.values()) {
            const w = group[0];
            const queue = queueSettings(settings, w.queue);
            const reason =
                queue &&
                notRunReason(
                    group.map((g) => g.pod),
                    queue.backoffLimit,
                );
            if (reason && !done.has(w.uuid)) {
                done.add(w.uuid);
                await giveUp(result, w, { reason, cause: "not-run" }, waiting, w.pod);
            }
        }
        // Failed before acquiring: only while Buildkite still has the job scheduled.
        const open = unsure.filter((u) => !done.has(u.uuid));
        if (open.length) {
            const states = await stacks.jobStates(stackKey, [...new Set(open.map((u) => u.uuid))]);
            for (const u of open) {
                if (states[u.uuid] !== "scheduled") {
                    settled.add(u.uid);
                    // A sidecar crash-looping beside a running job: tell its people why the step lacks it.
                    if (u.pod.status?.phase === "Running") await reports.tell(u.uuid, `Scaledkite: ${u.reason}`);
                } else if (!done.has(u.uuid)) {
                    done.add(u.uuid);
                    await giveUp(result, u, u, waiting, u.pod);
                }
            }
        }
        await jobsWithoutPods(result, workerJobs ?? [], pods, now, waiting);
        return waiting;
    }

    /** Worker Jobs the API server keeps refusing a pod (an admission policy): failed after a short grace. */
    async function jobsWithoutPods(
        result: WorkerSweep,
        workerJobs: V1Job[],
        pods: V1Pod[],
        now: Date,
        waiting: Waiting[],
    ) {
        const withPods = new Set(pods.map((p) => podIdentity(p, jobPrefix)?.jobName));
        const lonely = workerJobs.flatMap((job) => {
            const id = jobIdentity(job, jobPrefix);
            const created = Date.parse(String(job.metadata?.creationTimestamp ?? ""));
            const finished = job.status?.conditions?.some((c) => c.status === "True" && /Complete|Failed/.test(c.type));
            return id &&
                !withPods.has(id.jobName) &&
                !givenUp.has(id.uuid) &&
                !finished &&
                !job.metadata?.deletionTimestamp
                ? [{ id, created: new Date(Number.isNaN(created) ? now.getTime() : created) }]
                : [];
        });
        if (!lonely.length || !jobs.listEvents || !lonely.some((l) => now.getTime() - l.created.getTime() >= 30_000))
            return;
        const events = await jobs.listEvents(namespace, "Job");
        for (const { id, created } of lonely) {
            const reason = noPodReason(
                created,
                events.filter((e) => e.involvedObject?.name === id.jobName),
                now,
            );
            if (reason) await giveUp(result, id, { reason, cause: "refused", since: created }, waiting);
        }
    }

    async function sweep(deferred: DeferredJob[]): Promise<WorkerSweep> {
        const result = fresh();
        if (!jobs.listWorkerPods) return result;
        const now = new Date();
        const [all, workerJobs] = await Promise.all([
            jobs.listWorkerPods(namespace),
            jobs.listWorkerJobs ? jobs.listWorkerJobs(namespace) : Promise.resolve(undefined),
        ]);
        reports.logWorkerMetrics(
            all.filter((p) => podIdentity(p, jobPrefix)),
            now,
        );
        const waiting = await checkWorkers(result, all, workerJobs, now);
        await reports.notifyWaiting(result, waiting, deferred, now);
        await reports.extendReservations(waiting);
        if (waiting.length) {
            const states = await stacks.jobStates(stackKey, [...new Set(waiting.map((w) => w.uuid))]);
            const deleted = new Set<string>();
            for (const w of waiting) {
                const state = states[w.uuid];
                if (!state || !DONE_STATES.includes(state) || deleted.has(w.uuid)) continue;
                deleted.add(w.uuid);
                await jobs.deleteJob(namespace, w.jobName);
                result.cancelled.push(w.uuid);
                if (queueSettings(settings, w.queue)) {
                    const q = (result.byQueue![w.queue!] ??= { failedStuck: 0, deletedCancelled: 0 });
                    q.deletedCancelled++;
                }
                log(
                    jsonLine({
                        msg: "scaledkite.sweep",
                        outcome: "cancelled",
                        jobUuid: w.uuid,
                        job: `${namespace}/${w.jobName}`,
                        reason: `the Buildkite job is ${state}: its waiting worker is not needed`,
                    }),
                );
            }
        }
        return result;
    }

    return { check, sweep };
}
