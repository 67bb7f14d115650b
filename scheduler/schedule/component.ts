/**
 * The AWS side: the EventBridge rules on Buildkite's partner bus, the SQS queue their events wait in
 * (retried for at least a day, then the dead-letter queue, redrivable back), and the Lambda that
 * takes them in batches and turns each "Job Scheduled" event into one worker Job.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { type BatchResponse, handleBatch, isSqsBatch, queueRetries } from "./batch";
import { JOB_FINISHED, JOB_SCHEDULED } from "../core/event";
import { credentialsFromEnv } from "../clients/eksToken";
import { createEventHandler } from "./lambda";
import { logLine } from "../clients/log";
import { SECRETS_MANAGER_PACKAGE } from "../clients/secretsManager";
import { sqsVisibility } from "../clients/sqs";
import { eksJobClient, eksTokens, invocationDeadline } from "../clients/kube";
import { clusterStepSource } from "./stepSource";
import { type ClusterInputs, clusterAtRuntime, createClosureFunction } from "../aws/lambdaFunction";
import { createAlarms } from "../aws/alarms";
import { createEventRoute, eventBridgeQueuePolicy } from "../aws/eventRoute";
import { createLambdaRole } from "../aws/identity";
import { eventPattern } from "../core/queue";
import { type SchedulerSettings } from "../core/settings";
import { type LambdaConfig, type LambdaNetwork } from "../config/types";

/** Arguments of Scheduler. */
export interface SchedulerArgs {
    /** What the Lambda needs to build Jobs (no secrets). */
    settings: SchedulerSettings;
    /** The existing cluster: name, region, endpoint and CA, read at deploy time. */
    cluster: ClusterInputs;
    /** The Buildkite partner event bus. */
    eventBusName: string;
    /** Kubernetes groups the Lambda's role is mapped to by the EKS access entry. */
    kubernetesGroups: string[];
    /** Use this existing IAM role for the Lambda instead of creating one. */
    roleArn?: string;
    /** An SNS topic the alarms notify. */
    alarmTopicArn?: string;
    lambda: LambdaConfig;
}

/** The Lambda role's only permissions: write its logs, and take batches from its own event queue. */
export function schedulerPolicy(logGroupArn: string, queueArn: string): object {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "WriteLogs",
                Effect: "Allow",
                Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
                Resource: `${logGroupArn}:*`,
            },
            {
                Sid: "TakeEvents",
                Effect: "Allow",
                Action: [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ChangeMessageVisibility",
                ],
                Resource: queueArn,
            },
        ],
    };
}

export class Scheduler extends pulumi.ComponentResource {
    readonly functionName: pulumi.Output<string>;
    readonly functionArn: pulumi.Output<string>;
    readonly roleArn: pulumi.Output<string>;
    readonly ruleArn: pulumi.Output<string>;
    readonly cancelRuleArn: pulumi.Output<string>;
    readonly deadLetterQueueUrl: pulumi.Output<string>;
    /** Where events wait to be scheduled (the DLQ redrives back to it). */
    readonly eventQueueUrl: pulumi.Output<string>;
    readonly logGroupName: pulumi.Output<string>;
    /** The queues' names, for the dashboard's SQS metrics. */
    readonly deadLetterQueueName: pulumi.Output<string>;
    readonly eventQueueName: pulumi.Output<string>;

    constructor(name: string, args: SchedulerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("scaledkite:scheduler:Scheduler", name, {}, opts);
        const parent = { parent: this };
        const account = aws.getCallerIdentityOutput({}, parent).accountId;

        const dlq = new aws.sqs.Queue(
            `${name}-dlq`,
            { messageRetentionSeconds: 14 * 24 * 3600, sqsManagedSseEnabled: true },
            parent,
        );
        // Events wait here until they are scheduled: a failed record is delivered again after the
        // visibility timeout, for at least a day, then it goes to the DLQ (and may be redriven back).
        const retries = queueRetries(args.lambda.timeoutSeconds);
        const events = new aws.sqs.Queue(
            `${name}-events`,
            {
                visibilityTimeoutSeconds: retries.visibilityTimeoutSeconds,
                messageRetentionSeconds: retries.messageRetentionSeconds,
                sqsManagedSseEnabled: true,
                redrivePolicy: dlq.arn.apply((arn) =>
                    JSON.stringify({ deadLetterTargetArn: arn, maxReceiveCount: retries.maxReceiveCount }),
                ),
            },
            parent,
        );
        new aws.sqs.RedriveAllowPolicy(
            `${name}-dlq-redrive`,
            {
                queueUrl: dlq.url,
                redriveAllowPolicy: events.arn.apply((arn) =>
                    JSON.stringify({ redrivePermission: "byQueue", sourceQueueArns: [arn] }),
                ),
            },
            parent,
        );
        const logGroup = new aws.cloudwatch.LogGroup(
            `${name}-logs`,
            {
                name: `/scaledkite/${pulumi.getStack()}/${name}`,
                retentionInDays: args.lambda.logRetentionDays,
            },
            parent,
        );
        const role =
            args.roleArn === undefined
                ? createSchedulerRole(name, logGroup.arn, events.arn, parent, args.lambda.network)
                : undefined;
        const roleArn = args.roleArn ?? role!.arn;

        const fn = createSchedulerFunction(name, args, roleArn, logGroup, parent);
        new aws.lambda.EventSourceMapping(
            `${name}-events`,
            {
                eventSourceArn: events.arn,
                functionName: fn.name,
                batchSize: 10,
                // No batching window: a record is handed over as soon as it arrives.
                maximumBatchingWindowInSeconds: 0,
                functionResponseTypes: ["ReportBatchItemFailures"],
                scalingConfig: { maximumConcurrency: eventSourceConcurrency(args.lambda.schedulerConcurrency) },
            },
            { ...parent, dependsOn: role ? [role] : [] },
        );

        new aws.eks.AccessEntry(
            `${name}-access`,
            {
                clusterName: args.cluster.name,
                principalArn: roleArn,
                kubernetesGroups: args.kubernetesGroups,
                type: "STANDARD",
            },
            parent,
        );

        const queues = Object.keys(args.settings.queues);
        const route = {
            eventBusName: args.eventBusName,
            queues,
            retryAttempts: args.lambda.retryAttempts,
            maxEventAgeSeconds: args.lambda.maxEventAgeSeconds,
        };
        const routeOf = (suffix: string, detailType: typeof JOB_SCHEDULED | typeof JOB_FINISHED) =>
            createEventRoute(
                `${name}-${suffix}`,
                eventPattern("", queues, detailType),
                route,
                account,
                events.arn,
                dlq.arn,
                parent,
            );
        const rule = routeOf("job-scheduled", JOB_SCHEDULED);
        const cancelRule = routeOf("job-cancelled", JOB_FINISHED);
        for (const [queue, id] of [
            [dlq, "dlq"],
            [events, "events"],
        ] as const) {
            new aws.sqs.QueuePolicy(
                `${name}-${id}-policy`,
                {
                    queueUrl: queue.url,
                    policy: pulumi
                        .all([queue.arn, rule.arn, cancelRule.arn])
                        .apply(([q, ...rules]) => JSON.stringify(eventBridgeQueuePolicy(q, rules))),
                },
                parent,
            );
        }

        createAlarms(
            name,
            { dlqName: dlq.name, functionName: fn.name, logGroupName: logGroup.name, topicArn: args.alarmTopicArn },
            parent,
        );

        this.functionName = fn.name;
        this.functionArn = fn.arn;
        this.roleArn = pulumi.output(roleArn);
        this.ruleArn = rule.arn;
        this.cancelRuleArn = cancelRule.arn;
        this.deadLetterQueueUrl = dlq.url;
        this.eventQueueUrl = events.url;
        this.logGroupName = logGroup.name;
        this.deadLetterQueueName = dlq.name;
        this.eventQueueName = events.name;
        this.registerOutputs({
            functionName: this.functionName,
            roleArn: this.roleArn,
            ruleArn: this.ruleArn,
            deadLetterQueueUrl: this.deadLetterQueueUrl,
            logGroupName: this.logGroupName,
        });
    }
}

/** The Lambda's own role, with an inline least-privilege policy and no managed policies. */
export function createSchedulerRole(
    name: string,
    logGroupArn: pulumi.Output<string>,
    queueArn: pulumi.Output<string>,
    opts: pulumi.CustomResourceOptions,
    network?: LambdaNetwork,
): aws.iam.Role {
    return createLambdaRole(
        name,
        "Scaledkite scheduler Lambda: writes its logs and takes its event queue; Kubernetes access comes from its EKS access entry",
        pulumi.all([logGroupArn, queueArn]).apply(([l, q]) => schedulerPolicy(l, q)),
        opts,
        network,
    );
}

/**
 * The Lambda itself: a closure Pulumi serializes with the stack's settings and the cluster's endpoint
 * and CA captured as values. The factory runs once per Lambda container: it builds the Kubernetes
 * client and token cache there, so each event costs one API call.
 */
export function createSchedulerFunction(
    name: string,
    args: SchedulerArgs,
    role: pulumi.Input<string>,
    logGroup: aws.cloudwatch.LogGroup,
    opts: pulumi.CustomResourceOptions,
): aws.lambda.CallbackFunction<unknown, BatchResponse | undefined> {
    const settings = args.settings;
    const cluster = clusterAtRuntime(args.cluster);
    const account = aws.getCallerIdentityOutput({}, opts).accountId;
    const eventBusName = args.eventBusName;
    const retries = queueRetries(args.lambda.timeoutSeconds);
    return createClosureFunction(
        name,
        {
            role,
            logGroup,
            memoryMb: args.lambda.memoryMb,
            timeoutSeconds: args.lambda.timeoutSeconds,
            reservedConcurrency: args.lambda.schedulerConcurrency,
            network: args.lambda.network,
            // Its cold start matters: it packs only what it loads.
            excludePackages: [SECRETS_MANAGER_PACKAGE],
            description: "Scaledkite: turns Buildkite Job Scheduled events into worker Jobs",
            callbackFactory: () => {
                const deadline = invocationDeadline();
                const access = cluster();
                const tokens = eksTokens(access);
                const handle = createEventHandler(settings, eksJobClient(access, tokens, deadline.get), logLine, {
                    origin: { account: account.get(), eventBusName },
                    steps: clusterStepSource(settings, access, tokens),
                });
                const retry = {
                    setVisibility: sqsVisibility(() => credentialsFromEnv()),
                    maxDelaySeconds: retries.visibilityTimeoutSeconds,
                    log: logLine,
                };
                return async (event: unknown, context?: { getRemainingTimeInMillis?: () => number }) => {
                    deadline.start(context);
                    // A batch from the event queue, or one event (the CLI, a test, a direct invoke).
                    if (isSqsBatch(event)) return handleBatch(event.Records, handle, retry);
                    await handle(event);
                    return undefined;
                };
            },
        },
        opts,
    );
}

/** The event source mapping's maximum concurrency: the scheduler's reserved concurrency (SQS allows 2 to 1,000). Pure. */
export function eventSourceConcurrency(reserved?: number): number {
    return Math.min(1000, Math.max(2, reserved ?? 100));
}
