/**
 * What every closure-serialized Lambda of the stack is made of at `pulumi up` (deploy time): its log
 * group, its role with one inline policy, its EKS access entry, its alarms, the cluster's access
 * details captured as values, and the CallbackFunction itself.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { EksClusterAccess } from "../clients/kube";
import { type LambdaNetwork } from "../config/types";
import { createAlarms } from "./alarms";
import { createLambdaIdentity } from "./identity";

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
