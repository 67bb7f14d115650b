/** A Lambda's alarms: its errors and throttles, and the metric filter of its invalid events. */
import * as aws from "@pulumi/aws";
import type * as pulumi from "@pulumi/pulumi";

/** Metric name (namespace "Scaledkite") of the count of invalid events, from the Lambda's log lines. */
export const INVALID_EVENTS_METRIC = "InvalidEvents";

/**
 * Nothing fails silently: an alarm when the DLQ holds anything, an alarm when the Lambda errs (both
 * notify `topicArn` when given), and a count of invalid events from the decision log lines.
 */
export function createAlarms(
    name: string,
    args: {
        dlqName?: pulumi.Input<string>;
        functionName: pulumi.Input<string>;
        logGroupName: pulumi.Input<string>;
        topicArn?: string;
    },
    opts: pulumi.CustomResourceOptions,
): aws.cloudwatch.MetricAlarm[] {
    const actions = args.topicArn ? [args.topicArn] : [];
    const common = {
        comparisonOperator: "GreaterThanThreshold",
        threshold: 0,
        evaluationPeriods: 1,
        period: 300,
        treatMissingData: "notBreaching",
        alarmActions: actions,
        okActions: actions,
    };
    new aws.cloudwatch.LogMetricFilter(
        `${name}-invalid-events`,
        {
            logGroupName: args.logGroupName,
            // A JSON pattern: the decision line's own fields, exactly (the Lambda writes it as a raw JSON line).
            pattern: '{ $.msg = "scaledkite.schedule" && $.outcome = "invalid" }',
            metricTransformation: {
                name: INVALID_EVENTS_METRIC,
                namespace: "Scaledkite",
                value: "1",
                defaultValue: "0",
            },
        },
        opts,
    );
    return [
        ...(args.dlqName === undefined
            ? []
            : [
                  new aws.cloudwatch.MetricAlarm(
                      `${name}-dlq-not-empty`,
                      {
                          ...common,
                          alarmDescription:
                              "Scaledkite: events that could not be scheduled are waiting in the dead-letter queue; the Lambda's log says why for each job",
                          namespace: "AWS/SQS",
                          metricName: "ApproximateNumberOfMessagesVisible",
                          statistic: "Maximum",
                          dimensions: { QueueName: args.dlqName },
                      },
                      opts,
                  ),
              ]),
        new aws.cloudwatch.MetricAlarm(
            `${name}-errors`,
            {
                ...common,
                alarmDescription: `Scaledkite: the ${name} Lambda failed (its log line says why; failures worth retrying are retried)`,
                namespace: "AWS/Lambda",
                metricName: "Errors",
                statistic: "Sum",
                dimensions: { FunctionName: args.functionName },
            },
            opts,
        ),
    ];
}
