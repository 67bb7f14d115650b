/**
 * The sweep's AWS side: a second closure-serialized Lambda on a schedule, with its own role (logs
 * only) and its own EKS access entry (group scaledkite:sweeper, which may also read the agent token
 * Secret that the Stacks API needs).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { agentTokenReader, type EksClusterAccess, eksJobClient, eksTokens, invocationDeadline } from "../clients/kube";
import {
    type ClusterLambdaArgs,
    createClusterLambda,
    invokeOnRule,
    type LambdaContext,
    scheduleExpression,
} from "../aws/lambdaFunction";
import { type SchedulerSettings } from "../core/settings";
import { SECRETS_MANAGER_PACKAGE } from "../clients/secretsManager";
import { stacksApi } from "../clients/stacksApi";
import { createSweeper, keepQueuesConnected } from "./lambda";
import { heartbeatOffsets } from "../core/notices";
import { jsonLine, logLine } from "../clients/log";

/** Arguments of Sweeper. */
export interface SweeperArgs extends ClusterLambdaArgs {
    settings: SchedulerSettings;
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
    /** Hold a watch on the workers between listings (watch.ts), failing within seconds what will never run. */
    watchWorkers: boolean;
    timeoutSeconds: number;
    /** Reserved concurrency: 1 keeps sweeps from overlapping. */
    reservedConcurrency: number;
}

export class Sweeper extends pulumi.ComponentResource {
    readonly functionName: pulumi.Output<string>;

    constructor(name: string, args: SweeperArgs, opts?: pulumi.ComponentResourceOptions) {
        super("scaledkite:scheduler:Sweeper", name, {}, opts);
        const parent = { parent: this };
        const { fn } = createClusterLambda(
            name,
            {
                ...args,
                roleDescription:
                    "Scaledkite sweep Lambda: writes its logs; Kubernetes access comes from its EKS access entry",
                policy: (l) => ({
                    Version: "2012-10-17",
                    Statement: [
                        {
                            Sid: "WriteLogs",
                            Effect: "Allow",
                            Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
                            Resource: `${l}:*`,
                        },
                    ],
                }),
                description: "Scaledkite: schedules Buildkite jobs whose events were lost",
                memoryMb: 128,
                timeoutSeconds: Math.max(args.timeoutSeconds, 60),
                reservedConcurrency: args.reservedConcurrency,
                excludePackages: [SECRETS_MANAGER_PACKAGE],
                factory: sweepFactory(args),
            },
            parent,
        );
        const schedule = new aws.cloudwatch.EventRule(
            `${name}-schedule`,
            {
                description: `Scaledkite sweep: schedules jobs whose events were lost (${scheduleExpression(args.intervalMinutes)})`,
                scheduleExpression: scheduleExpression(args.intervalMinutes),
            },
            parent,
        );
        invokeOnRule(schedule, fn, { permission: `${name}-invoke`, target: `${name}-target` }, parent);
        // A failed sweep is not run again by Lambda (two async retries by default): the next one is
        // due within the interval, and retries would overlap it under reserved concurrency 1.
        new aws.lambda.FunctionEventInvokeConfig(
            `${name}-async`,
            { functionName: fn.name, maximumRetryAttempts: 0, maximumEventAgeInSeconds: 60 },
            parent,
        );

        this.functionName = fn.name;
        this.registerOutputs({ functionName: this.functionName });
    }
}

/** Time the watch leaves at the end of the interval (or the invocation): the next sweep starts its own. */
const WATCH_MARGIN_MS = 5_000;

/** The sweep Lambda's set-up, once per container (serialized with the values it captures); it returns one sweep per invocation. */
function sweepFactory(
    args: SweeperArgs,
): (cluster: EksClusterAccess) => (event: unknown, context?: LambdaContext) => Promise<void> {
    const { settings, stackKey, endpoint } = args;
    const keepConnected = args.keepQueuesConnected;
    const stuck = {
        pendingTimeoutMs: args.podPendingTimeoutSeconds * 1000,
        startFailureGraceMs: args.startFailureGraceSeconds * 1000,
        intervalMs: args.intervalMinutes * 60_000,
    };
    return (cluster) => {
        const tokens = eksTokens(cluster);
        const agentToken = agentTokenReader(cluster, tokens, settings.namespace);
        const deadline = invocationDeadline();
        const stacks = stacksApi(agentToken, { endpoint });
        const sweep = createSweeper(
            settings,
            stacks,
            eksJobClient(cluster, tokens, deadline.get),
            stackKey,
            undefined,
            stuck,
        );
        const queues = Object.keys(settings.queues);
        const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
        return async (_event, context) => {
            const startedAt = Date.now();
            const timeoutMs = context?.getRemainingTimeInMillis?.() ?? 60_000;
            deadline.start(context);
            // Until the next sweep (or the end of this invocation): a watch on the workers, and a light
            // listing of each queue every 20 s that keeps it Connected.
            const until = startedAt + Math.min(stuck.intervalMs, timeoutMs) - WATCH_MARGIN_MS;
            const watching = args.watchWorkers ? sweep.watch(until) : Promise.resolve(undefined);
            try {
                await sweep();
            } finally {
                if (keepConnected)
                    await keepQueuesConnected(
                        stacks,
                        stackKey,
                        queues,
                        heartbeatOffsets(stuck.intervalMs, timeoutMs),
                        startedAt,
                        sleep,
                    );
                const watched = await watching;
                if (watched) logLine(jsonLine({ msg: "scaledkite.watch", ...watched }));
            }
        };
    };
}
