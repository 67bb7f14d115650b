/** A route from the Buildkite partner bus to an SQS queue: the rule, its target with a retry policy and a DLQ, and the queue policy that lets the rules send. */
import * as aws from "@pulumi/aws";
import type * as pulumi from "@pulumi/pulumi";

/** Lets EventBridge (for these rules only) put events into a queue (the event queue, or the DLQ for undeliverable ones). */
export function eventBridgeQueuePolicy(queueArn: string, ruleArns: string[]): object {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "EventBridgeSends",
                Effect: "Allow",
                Principal: { Service: "events.amazonaws.com" },
                Action: "sqs:SendMessage",
                Resource: queueArn,
                Condition: { ArnEquals: { "aws:SourceArn": ruleArns } },
            },
        ],
    };
}

/**
 * One route from the partner bus to the event queue: the rule (its pattern completed with the
 * account) and an explicit target with a retry policy and the DLQ for events it cannot deliver.
 */
export function createEventRoute(
    name: string,
    pattern: Record<string, unknown>,
    args: { eventBusName: string; queues: string[]; retryAttempts: number; maxEventAgeSeconds: number },
    account: pulumi.Output<string>,
    queueArn: pulumi.Output<string>,
    dlqArn: pulumi.Output<string>,
    opts: pulumi.CustomResourceOptions,
): aws.cloudwatch.EventRule {
    const rule = new aws.cloudwatch.EventRule(
        name,
        {
            eventBusName: args.eventBusName,
            description: `Buildkite ${(pattern["detail-type"] as string[])[0]} events for queues ${args.queues.join(", ")} (Scaledkite)`,
            eventPattern: account.apply((a) => JSON.stringify({ ...pattern, account: [a] })),
        },
        opts,
    );
    new aws.cloudwatch.EventTarget(
        `${name}-target`,
        {
            rule: rule.name,
            eventBusName: args.eventBusName,
            arn: queueArn,
            retryPolicy: {
                maximumRetryAttempts: args.retryAttempts,
                maximumEventAgeInSeconds: args.maxEventAgeSeconds,
            },
            deadLetterConfig: { arn: dlqArn },
        },
        opts,
    );
    return rule;
}
