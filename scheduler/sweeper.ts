/**
 * The sweep's AWS side: a second closure-serialized Lambda on a schedule, with its own role (logs
 * only) and its own EKS access entry (group scaledkite:sweeper, which may also read the agent token
 * Secret that the Stacks API needs).
 */
import type { LambdaNetwork } from "./config";
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { bearerSecretReader, eksJobClient, eksTokens, invocationDeadline } from "./kube";
import { ClusterInputs, clusterAtRuntime, createAlarms, createClosureFunction, createLambdaIdentity } from "./lambdaFunction";
import { AGENT_TOKEN_KEY, SchedulerSettings, SECRET_NAMES } from "./settings";
import { stacksApi } from "./stacksApi";
import { createSweeper, keepQueuesConnected } from "./sweep";
import { heartbeatOffsets } from "./notices";

/** Arguments of Sweeper. */
export interface SweeperArgs {
    settings: SchedulerSettings;
    cluster: ClusterInputs;
    /** Minutes between sweeps. */
    intervalMinutes: number;
    /** The stack key the sweep registers with Buildkite's Stacks API. */
    stackKey: string;
    /** The Stacks API endpoint. */
    endpoint: string;
    /** Seconds a worker pod may stay Pending, and may fail to start, before the sweep gives up on it. */
    podPendingTimeoutSeconds: number;
    startFailureGraceSeconds: number;
    /** List each queue every 20 s between sweeps, so Buildkite shows it Connected (the sweep then runs about 40 s a minute). */
    keepQueuesConnected: boolean;
    /** Kubernetes groups of the sweep's identity. */
    kubernetesGroups: string[];
    logRetentionDays: number;
    timeoutSeconds: number;
    /** Reserved concurrency: 1 keeps sweeps from overlapping. */
    reservedConcurrency: number;
    network?: LambdaNetwork;
    alarmTopicArn?: string;
}

/** The schedule expression for an interval in minutes. Pure. */
export function scheduleExpression(minutes: number): string {
    return `rate(${minutes} ${minutes === 1 ? "minute" : "minutes"})`;
}

export class Sweeper extends pulumi.ComponentResource {
    readonly functionName: pulumi.Output<string>;
    readonly roleArn: pulumi.Output<string>;

    constructor(name: string, args: SweeperArgs, opts?: pulumi.ComponentResourceOptions) {
        super("scaledkite:scheduler:Sweeper", name, {}, opts);
        const parent = { parent: this };
        const { logGroup, role } = createLambdaIdentity(name, {
            description: "Scaledkite sweep Lambda: writes its logs; Kubernetes access comes from its EKS access entry",
            policy: (l) => ({
                Version: "2012-10-17",
                Statement: [{ Sid: "WriteLogs", Effect: "Allow", Action: ["logs:CreateLogStream", "logs:PutLogEvents"], Resource: `${l}:*` }],
            }),
            clusterName: args.cluster.name, kubernetesGroups: args.kubernetesGroups, logRetentionDays: args.logRetentionDays, network: args.network,
        }, parent);

        const fn = createSweepFunction(name, args, role.arn, logGroup, parent);
        const schedule = new aws.cloudwatch.EventRule(`${name}-schedule`, {
            description: `Scaledkite sweep: schedules jobs whose events were lost (${scheduleExpression(args.intervalMinutes)})`,
            scheduleExpression: scheduleExpression(args.intervalMinutes),
        }, parent);
        new aws.lambda.Permission(`${name}-invoke`, { action: "lambda:InvokeFunction", function: fn.name, principal: "events.amazonaws.com", sourceArn: schedule.arn }, parent);
        new aws.cloudwatch.EventTarget(`${name}-target`, { rule: schedule.name, arn: fn.arn }, parent);
        createAlarms(name, { functionName: fn.name, logGroupName: logGroup.name, topicArn: args.alarmTopicArn }, parent);

        this.functionName = fn.name;
        this.roleArn = role.arn;
        this.registerOutputs({ functionName: this.functionName, roleArn: this.roleArn });
    }
}

/** The sweep Lambda: set-up once per container, one sweep per invocation. */
export function createSweepFunction(
    name: string, args: SweeperArgs, role: pulumi.Input<string>, logGroup: aws.cloudwatch.LogGroup, opts: pulumi.CustomResourceOptions,
): aws.lambda.CallbackFunction<unknown, void> {
    const { settings, stackKey, endpoint } = args;
    const keepConnected = args.keepQueuesConnected;
    const stuck = { pendingTimeoutMs: args.podPendingTimeoutSeconds * 1000, startFailureGraceMs: args.startFailureGraceSeconds * 1000, intervalMs: args.intervalMinutes * 60_000 };
    const clusterAccess = clusterAtRuntime(args.cluster);
    return createClosureFunction(name, {
        role, logGroup, memoryMb: 128, timeoutSeconds: Math.max(args.timeoutSeconds, 60),
        reservedConcurrency: args.reservedConcurrency, network: args.network,
        description: "Scaledkite: schedules Buildkite jobs whose events were lost",
        callbackFactory: () => {
            const cluster = clusterAccess();
            const tokens = eksTokens(cluster);
            const agentToken = bearerSecretReader(cluster.endpoint, cluster.caData, tokens, settings.namespace, SECRET_NAMES.agentToken, AGENT_TOKEN_KEY);
            const deadline = invocationDeadline();
            const stacks = stacksApi(agentToken, { endpoint });
            const sweep = createSweeper(settings, stacks, eksJobClient(cluster, tokens, deadline.get), stackKey, undefined, stuck);
            const queues = Object.keys(settings.queues);
            const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
            return async (_event: unknown, context?: { getRemainingTimeInMillis?: () => number }) => {
                const startedAt = Date.now();
                const timeoutMs = context?.getRemainingTimeInMillis?.() ?? 60_000;
                deadline.start(context);
                try {
                    await sweep();
                } finally {
                    // Until the next sweep: a light listing of each queue every 20 s keeps it Connected.
                    if (keepConnected) await keepQueuesConnected(stacks, stackKey, queues, heartbeatOffsets(stuck.intervalMs, timeoutMs), startedAt, sleep);
                }
            };
        },
    }, opts);
}
