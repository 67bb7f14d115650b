/**
 * The stack's CloudWatch dashboard: how long users wait (start latency and schedule delay per queue),
 * what happened to events, the queues, the Lambdas, the sweep and the workers. Its metrics are the
 * Lambdas' own (metrics.ts, Embedded Metric Format) and AWS's (SQS, Lambda). Runs at `pulumi up`.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { METRIC_NAMESPACE, METRICS, NO_QUEUE, OUTCOMES } from "../core/metrics";
import { CAUSES } from "../core/stuck";

/** What the dashboard shows, resolved. */
export interface DashboardInput {
    region: string;
    /** The workers' Kubernetes namespace: the Namespace dimension of every Scaledkite metric. */
    namespace: string;
    queues: string[];
    schedulerFunction: string;
    /** Absent when the sweep is off. */
    sweepFunction?: string;
    deadLetterQueue: string;
    eventQueue: string;
}

const PERIOD = 60;

type MetricLine = (string | { stat?: string; label?: string; yAxis?: string })[];

function widget(
    title: string,
    metrics: MetricLine[],
    region: string,
    x: number,
    y: number,
    opts: { stat?: string; unit?: string } = {},
): object {
    return {
        type: "metric",
        x,
        y,
        width: 12,
        height: 6,
        properties: {
            title,
            region,
            metrics,
            view: "timeSeries",
            stacked: false,
            period: PERIOD,
            stat: opts.stat ?? "Sum",
            ...(opts.unit ? { yAxis: { left: { label: opts.unit, showUnits: false } } } : {}),
        },
    };
}

/** The dashboard body (CloudWatch's JSON), one widget per question a platform engineer asks. Pure. */
export function dashboardBody(d: DashboardInput): { widgets: object[] } {
    const own = (metric: string, queue: string, extra: Record<string, string> = {}) => [
        METRIC_NAMESPACE,
        metric,
        "Namespace",
        d.namespace,
        "Queue",
        queue,
        ...Object.entries(extra).flat(),
    ];
    const percentiles = (metric: string, extra: Record<string, string> = {}) =>
        d.queues.flatMap((q) =>
            ["p50", "p90", "p99"].map((stat) => [...own(metric, q, extra), { stat, label: `${q} ${stat}` }]),
        );
    const perQueue = (metrics: string[], stat: string) =>
        d.queues.flatMap((q) => metrics.map((m) => [...own(m, q), { stat, label: `${q} ${m}` }]));
    const lambdas = [["scheduler", d.schedulerFunction], ...(d.sweepFunction ? [["sweep", d.sweepFunction]] : [])];
    const widgets = [
        widget("Start latency: job runnable → agent running (ms)", percentiles(METRICS.startLatency), d.region, 0, 0, {
            unit: "ms",
        }),
        widget(
            "Schedule delay: job runnable → worker Job created (ms)",
            percentiles(METRICS.scheduleDelay, { Outcome: "created" }),
            d.region,
            12,
            0,
            { unit: "ms" },
        ),
        widget(
            "Events by outcome",
            [...d.queues, NO_QUEUE].flatMap((q) =>
                OUTCOMES.map((o) => [...own(METRICS.events, q, { Outcome: o }), { label: `${q} ${o}` }]),
            ),
            d.region,
            0,
            6,
        ),
        widget(
            "Event queue and dead-letter queue",
            [
                [
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    "QueueName",
                    d.deadLetterQueue,
                    { stat: "Maximum", label: "DLQ depth" },
                ],
                [
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    "QueueName",
                    d.eventQueue,
                    { stat: "Maximum", label: "waiting events" },
                ],
                [
                    "AWS/SQS",
                    "ApproximateAgeOfOldestMessage",
                    "QueueName",
                    d.eventQueue,
                    { stat: "Maximum", label: "oldest event (s)", yAxis: "right" },
                ],
            ],
            d.region,
            12,
            6,
        ),
        widget(
            "Lambda errors, throttles and duration",
            lambdas.flatMap(([label, fn]) => [
                ["AWS/Lambda", "Errors", "FunctionName", fn, { stat: "Sum", label: `${label} errors` }],
                ["AWS/Lambda", "Throttles", "FunctionName", fn, { stat: "Sum", label: `${label} throttles` }],
                [
                    "AWS/Lambda",
                    "Duration",
                    "FunctionName",
                    fn,
                    { stat: "p99", label: `${label} duration p99 (ms)`, yAxis: "right" },
                ],
            ]),
            d.region,
            0,
            12,
        ),
        widget(
            "Sweep actions",
            perQueue(
                [
                    METRICS.sweepCreated,
                    METRICS.sweepDeferred,
                    METRICS.sweepFailed,
                    METRICS.failedStuck,
                    METRICS.deletedCancelled,
                ],
                "Sum",
            ),
            d.region,
            12,
            12,
        ),
        widget(
            "Workers running and pending",
            perQueue([METRICS.runningWorkers, METRICS.pendingWorkers], "Maximum"),
            d.region,
            0,
            18,
        ),
        widget(
            "Workers given up on: made → job failed in Buildkite, by reason (ms)",
            CAUSES.flatMap((cause) =>
                (["p50", "Maximum"] as const).map((stat) => [
                    METRIC_NAMESPACE,
                    METRICS.unrunnableAfter,
                    "Namespace",
                    d.namespace,
                    "Reason",
                    cause,
                    { stat, label: `${cause} ${stat === "p50" ? "p50" : "max"}` },
                ]),
            ),
            d.region,
            12,
            18,
            { unit: "ms" },
        ),
    ];
    return { widgets };
}

/** A CloudWatch dashboard name for a stack: letters, digits, '-' and '_', at most 255. Pure. */
export function dashboardName(project: string, stack: string): string {
    return `${project}-${stack}`.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 255);
}

export interface DashboardArgs {
    namespace: pulumi.Input<string>;
    queues: string[];
    schedulerFunction: pulumi.Input<string>;
    sweepFunction?: pulumi.Input<string>;
    deadLetterQueue: pulumi.Input<string>;
    eventQueue: pulumi.Input<string>;
}

/** Creates the stack's dashboard in the provider's region. */
export function createDashboard(
    name: string,
    args: DashboardArgs,
    opts?: pulumi.CustomResourceOptions,
): aws.cloudwatch.Dashboard {
    const region = aws.getRegionOutput({}, opts).region;
    const body = pulumi
        .all([
            region,
            args.namespace,
            args.schedulerFunction,
            args.sweepFunction,
            args.deadLetterQueue,
            args.eventQueue,
        ])
        .apply(([r, namespace, schedulerFunction, sweepFunction, deadLetterQueue, eventQueue]) =>
            JSON.stringify(
                dashboardBody({
                    region: r,
                    namespace,
                    queues: args.queues,
                    schedulerFunction,
                    sweepFunction,
                    deadLetterQueue,
                    eventQueue,
                }),
            ),
        );
    return new aws.cloudwatch.Dashboard(
        name,
        { dashboardName: dashboardName(pulumi.getProject(), pulumi.getStack()), dashboardBody: body },
        opts,
    );
}
