/**
 * Metrics as CloudWatch Embedded Metric Format: the Lambdas' existing JSON log lines carry an `_aws`
 * directive, and CloudWatch Logs turns the named fields into metrics. No PutMetricData call, no extra
 * request per event, nothing to fail. Pure.
 *
 * Dimensions are kept few, so the number of metrics (each costs) grows only with queues:
 *   Namespace (the workers' Kubernetes namespace: one per stack), Queue, and Outcome for events.
 */

/** The CloudWatch namespace of every Scaledkite metric. */
export const METRIC_NAMESPACE = "Scaledkite";
/** EMF takes at most 100 values per metric in one line. */
export const MAX_METRIC_VALUES = 100;
/** The Queue dimension's value when an event matched no queue (invalid or foreign events). */
export const NO_QUEUE = "none";

/** What the scheduler did with an event: the Outcome dimension of the Events metric. */
export const OUTCOMES = ["created", "exists", "cancelled", "ignored", "invalid", "refused", "failed"] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** The metric names, in one place for the emitters and the dashboard. */
export const METRICS = {
    /** Events by outcome (created, exists, cancelled, ignored, invalid, failed). */
    events: "Events",
    /** From the job becoming runnable (the event's runnable_at, else its time) to its worker Job created. */
    scheduleDelay: "ScheduleDelay",
    /** Sweep actions. */
    sweepCreated: "SweepCreated",
    sweepDeferred: "SweepDeferred",
    sweepFailed: "SweepFailed",
    failedStuck: "FailedStuck",
    deletedCancelled: "DeletedCancelled",
    /** Workers by phase, as the sweep saw them. */
    runningWorkers: "RunningWorkers",
    pendingWorkers: "PendingWorkers",
    /** From the job becoming runnable to its agent container running, for workers started since the last sweep. */
    startLatency: "StartLatency",
    /** From a worker's pod (or, refused a pod, its Job) being created to its job failed in Buildkite, by Reason (stuck.ts CAUSES). */
    unrunnableAfter: "UnrunnableAfter",
} as const;

export type MetricUnit = "Count" | "Milliseconds";

export interface Metric {
    name: string;
    unit: MetricUnit;
    /** One value, or several (a distribution: CloudWatch keeps every value for percentiles). */
    value: number | number[];
}

/**
 * `record` with the metrics and their dimensions added as EMF: the dimensions and each metric become
 * top-level fields, described by `_aws`. Metrics without a value (an empty list) are left out; with
 * none left, the record is returned as it was. Pure.
 */
export function withMetrics(
    record: Record<string, unknown>,
    dimensions: Record<string, string>,
    metrics: Metric[],
    now: number,
): Record<string, unknown> {
    const present = metrics
        .map((m) => ({ ...m, value: Array.isArray(m.value) ? m.value.slice(0, MAX_METRIC_VALUES) : m.value }))
        .filter((m) => !Array.isArray(m.value) || m.value.length > 0);
    if (present.length === 0) return record;
    const out: Record<string, unknown> = { ...record, ...dimensions };
    for (const m of present) out[m.name] = m.value;
    out._aws = {
        Timestamp: now,
        CloudWatchMetrics: [
            {
                Namespace: METRIC_NAMESPACE,
                Dimensions: [Object.keys(dimensions)],
                Metrics: present.map((m) => ({ Name: m.name, Unit: m.unit })),
            },
        ],
    };
    return out;
}

/** Milliseconds from an ISO time to `now`, or undefined when the time is missing, unreadable or in the future by more than a minute. Pure. */
export function msSince(iso: string | undefined, now: number): number | undefined {
    if (!iso) return undefined;
    const t = Date.parse(iso);
    if (Number.isNaN(t) || t - now > 60_000) return undefined;
    return Math.max(0, now - t);
}
