/**
 * What every closure-serialized Lambda of the stack is made of at `pulumi up` (deploy time): its log
 * group, its role with one inline policy, its EKS access entry, its alarms, the cluster's access
 * details captured as values, and the CallbackFunction itself.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { EksClusterAccess } from "../clients/kube";
import { type LambdaNetwork } from "../config/types";

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

/**
 * What a cluster-facing Lambda of its own needs besides its code: a log group with retention, a role
 * with one inline policy (made from the log group's ARN), and the EKS access entry that puts the role
 * in its Kubernetes groups.
 */
export function createLambdaIdentity(
    name: string,
    args: {
        description: string;
        policy: (logGroupArn: string) => object;
        clusterName: string;
        kubernetesGroups: string[];
        logRetentionDays: number;
        network?: LambdaNetwork;
    },
    opts: pulumi.CustomResourceOptions,
): { logGroup: aws.cloudwatch.LogGroup; role: aws.iam.Role; access: aws.eks.AccessEntry } {
    const logGroup = new aws.cloudwatch.LogGroup(
        `${name}-logs`,
        { name: `/scaledkite/${pulumi.getStack()}/${name}`, retentionInDays: args.logRetentionDays },
        opts,
    );
    const role = createLambdaRole(name, args.description, logGroup.arn.apply(args.policy), opts, args.network);
    const access = new aws.eks.AccessEntry(
        `${name}-access`,
        {
            clusterName: args.clusterName,
            principalArn: role.arn,
            kubernetesGroups: args.kubernetesGroups,
            type: "STANDARD",
        },
        opts,
    );
    return { logGroup, role, access };
}

/**
 * What a Lambda in a VPC needs: its network interfaces in the configured subnets (the permissions of
 * AWS's AWSLambdaVPCAccessExecutionRole, as an inline statement). Pure.
 */
export function vpcAccessPolicy(): object {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "NetworkInterfaces",
                Effect: "Allow",
                Resource: "*",
                Action: [
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
            },
        ],
    };
}

/**
 * The trust policy of a Lambda's role: Lambda may assume it only on behalf of a function of this
 * account (aws:SourceAccount, AWS's guard against the confused deputy). Pure.
 */
export function lambdaTrustPolicy(account: string): object {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Effect: "Allow",
                Principal: { Service: "lambda.amazonaws.com" },
                Action: "sts:AssumeRole",
                Condition: { StringEquals: { "aws:SourceAccount": account } },
            },
        ],
    };
}

/** A role only Lambda can assume, with one inline policy (and one for its VPC interfaces when in a VPC), no managed policies. */
export function createLambdaRole(
    name: string,
    description: string,
    policy: pulumi.Output<object>,
    opts: pulumi.CustomResourceOptions,
    network?: LambdaNetwork,
): aws.iam.Role {
    const account = aws.getCallerIdentityOutput({}, opts).accountId;
    const role = new aws.iam.Role(
        `${name}-role`,
        {
            description,
            assumeRolePolicy: account.apply((a) => JSON.stringify(lambdaTrustPolicy(a))),
        },
        opts,
    );
    new aws.iam.RolePolicy(`${name}-policy`, { role: role.id, policy: policy.apply((p) => JSON.stringify(p)) }, opts);
    if (network)
        new aws.iam.RolePolicy(`${name}-vpc`, { role: role.id, policy: JSON.stringify(vpcAccessPolicy()) }, opts);
    return role;
}

/** The existing cluster as the stack reads it: name, and outputs for region, endpoint and CA. */
export interface ClusterInputs {
    name: string;
    region: pulumi.Input<string>;
    endpoint: pulumi.Input<string>;
    caData: pulumi.Input<string>;
}

/**
 * For a Lambda's callback factory: returns a function that gives the cluster's access details as plain
 * values inside the Lambda (Pulumi serializes the outputs' values into the closure).
 */
export function clusterAtRuntime(cluster: ClusterInputs): () => EksClusterAccess {
    const name = cluster.name;
    const region = pulumi.output(cluster.region);
    const endpoint = pulumi.output(cluster.endpoint);
    const caData = pulumi.output(cluster.caData);
    return () => ({ name, region: region.get(), endpoint: endpoint.get(), caData: caData.get() });
}

/** Production dependencies only `pulumi up` loads (the config parser's schemas): never in a Lambda's package. */
export const DEPLOY_TIME_PACKAGES = ["zod"];

/** A closure-serialized Lambda on Node 24 with a given role and log group (no broad default policies). */
export function createClosureFunction<R = void>(
    name: string,
    args: {
        role: pulumi.Input<string>;
        logGroup: aws.cloudwatch.LogGroup;
        memoryMb: number;
        timeoutSeconds: number;
        description: string;
        /** Reserved concurrency (undefined: the account's unreserved pool). */
        reservedConcurrency?: number;
        /** Subnets and security groups (undefined: no VPC). */
        network?: LambdaNetwork;
        /** Production dependencies this function never loads, left out of its package (Pulumi packs them all by default). */
        excludePackages?: string[];
        callbackFactory: aws.lambda.CallbackFactory<unknown, R>;
    },
    opts: pulumi.CustomResourceOptions,
): aws.lambda.CallbackFunction<unknown, R> {
    return new aws.lambda.CallbackFunction<unknown, R>(
        `${name}-fn`,
        {
            runtime: aws.lambda.Runtime.NodeJS24dX,
            role: args.role,
            memorySize: args.memoryMb,
            timeout: args.timeoutSeconds,
            description: args.description,
            loggingConfig: { logFormat: "Text", logGroup: args.logGroup.name },
            ...(args.reservedConcurrency === undefined
                ? {}
                : { reservedConcurrentExecutions: args.reservedConcurrency }),
            ...(args.network
                ? { vpcConfig: { subnetIds: args.network.subnetIds, securityGroupIds: args.network.securityGroupIds } }
                : {}),
            codePathOptions: { extraExcludePackages: [...DEPLOY_TIME_PACKAGES, ...(args.excludePackages ?? [])] },
            callbackFactory: args.callbackFactory,
        },
        { ...opts, dependsOn: [args.logGroup] },
    );
}

/** The schedule expression for an interval in minutes. Pure. */
export function scheduleExpression(minutes: number): string {
    return `rate(${minutes} ${minutes === 1 ? "minute" : "minutes"})`;
}

/** What the sweep and the token sync share: the cluster they act on, their Kubernetes groups, logs, network and alarms. */
export interface ClusterLambdaArgs {
    cluster: ClusterInputs;
    /** Kubernetes groups of the Lambda's identity (its EKS access entry). */
    kubernetesGroups: string[];
    logRetentionDays: number;
    network?: LambdaNetwork;
    alarmTopicArn?: string;
}

/**
 * A cluster-facing Lambda of its own (createLambdaIdentity), its alarms, and the function: `factory`
 * runs once per Lambda container with the cluster's access details as plain values, and returns the
 * handler.
 */
export function createClusterLambda<R>(
    name: string,
    args: ClusterLambdaArgs & {
        /** The role's description, and its one inline policy made from the log group's ARN. */
        roleDescription: string;
        policy: (logGroupArn: string) => object;
        description: string;
        memoryMb: number;
        timeoutSeconds: number;
        reservedConcurrency?: number;
        excludePackages?: string[];
        factory: (cluster: EksClusterAccess) => (event: unknown, context?: LambdaContext) => Promise<R>;
    },
    opts: pulumi.CustomResourceOptions,
): { fn: aws.lambda.CallbackFunction<unknown, R>; access: aws.eks.AccessEntry } {
    const { logGroup, role, access } = createLambdaIdentity(
        name,
        {
            description: args.roleDescription,
            policy: args.policy,
            clusterName: args.cluster.name,
            kubernetesGroups: args.kubernetesGroups,
            logRetentionDays: args.logRetentionDays,
            network: args.network,
        },
        opts,
    );
    const clusterAccess = clusterAtRuntime(args.cluster);
    const factory = args.factory;
    const fn = createClosureFunction<R>(
        name,
        {
            role: role.arn,
            logGroup,
            memoryMb: args.memoryMb,
            timeoutSeconds: args.timeoutSeconds,
            reservedConcurrency: args.reservedConcurrency,
            network: args.network,
            description: args.description,
            excludePackages: args.excludePackages,
            callbackFactory: () => factory(clusterAccess()),
        },
        opts,
    );
    createAlarms(name, { functionName: fn.name, logGroupName: logGroup.name, topicArn: args.alarmTopicArn }, opts);
    return { fn, access };
}

/** The part of Lambda's context object the functions read. */
export interface LambdaContext {
    getRemainingTimeInMillis?: () => number;
}

/** Lets an EventBridge rule invoke a function, and makes the function the rule's target. */
export function invokeOnRule(
    rule: aws.cloudwatch.EventRule,
    fn: aws.lambda.Function,
    names: { permission: string; target: string },
    opts: pulumi.CustomResourceOptions,
    retryPolicy?: aws.types.input.cloudwatch.EventTargetRetryPolicy,
): void {
    new aws.lambda.Permission(
        names.permission,
        { action: "lambda:InvokeFunction", function: fn.name, principal: "events.amazonaws.com", sourceArn: rule.arn },
        opts,
    );
    new aws.cloudwatch.EventTarget(
        names.target,
        { rule: rule.name, arn: fn.arn, ...(retryPolicy ? { retryPolicy } : {}) },
        opts,
    );
}
