/** The validated stack configuration's types: what the k8s components and the program read, without the parser. */
import type { ResourceClass, WorkerSettings } from "../core/settings";

/** Where the Lambdas run in a VPC (to reach a private EKS endpoint): both lists, or neither. */
export interface LambdaNetwork {
    subnetIds: string[];
    securityGroupIds: string[];
}

/** Settings of the scheduler Lambda and its event delivery. */
export interface LambdaConfig {
    memoryMb: number;
    timeoutSeconds: number;
    /** Reserved concurrency of the scheduler Lambda (undefined: the account's unreserved pool). */
    schedulerConcurrency?: number;
    /** Reserved concurrency of the sweep Lambda: 1, so sweeps never overlap. */
    sweepConcurrency: number;
    /** Subnets and security groups of every Lambda (undefined: outside any VPC). */
    network?: LambdaNetwork;
    logRetentionDays: number;
    /** EventBridge retry policy: attempts and age before an undeliverable event goes to the DLQ. */
    retryAttempts: number;
    maxEventAgeSeconds: number;
}

/**
 * Where the agent token comes from: Pulumi config (a secret), or an AWS Secrets Manager secret that
 * the token sync copies into the cluster and keeps in sync.
 */
export type AgentTokenSource =
    { kind: "config" } | { kind: "secretsManager"; arn: string; jsonKey?: string; intervalMinutes: number };

/** One ECR registry the workers log in to. */
export interface EcrRegistry {
    /** The registry host, <account>.dkr.ecr.<region>.amazonaws.com. */
    registry: string;
    partition: string;
    account: string;
    region: string;
    /** Push as well as pull. */
    push: boolean;
    /** Repository name patterns the role may use ("*": all). */
    repositories: string[];
}

/** How the workers' IAM role reaches their pods. */
export type WorkerIdentity = "podIdentity" | "irsa";

/** The validated stack configuration. */
export interface StackConfig {
    agentToken: AgentTokenSource;
    /** ECR registries and how the workers' role is bound to their service account (absent: no ECR). */
    ecr?: { registries: EcrRegistry[]; identity: WorkerIdentity };
    cluster: string;
    eventBusName: string;
    roleArn?: string;
    namespace: string;
    jobPrefix: string;
    defaults: WorkerSettings;
    /** Queue name -> that queue's settings, merged over `defaults`. */
    queues: Record<string, WorkerSettings>;
    secrets: { env: boolean; gitCredentials: boolean; gitSsh: boolean; hooks: boolean; ecr: boolean };
    /** Agent hooks (file name -> script), mounted from a ConfigMap at the agent's hooks path. */
    hooks: Record<string, string>;
    /** known_hosts for git over SSH. */
    gitKnownHosts?: string;
    /** Private subnets for the Fargate profile (needed when a queue has fargate: true). */
    fargateSubnetIds: string[];
    /** Spend caps, enforced by a ResourceQuota on the namespace. */
    caps: SpendCaps;
    /** An SNS topic for the alarms (DLQ not empty, Lambda errors). */
    alarmTopicArn?: string;
    /** The sweep: minutes between runs (0: off), the Stacks API stack key and endpoint. */
    sweep: {
        intervalMinutes: number;
        stackKey?: string;
        endpoint: string;
        podPendingTimeoutSeconds: number;
        startFailureGraceSeconds: number;
        keepQueuesConnected: boolean;
        watchWorkers: boolean;
    };
    lambda: LambdaConfig;
    /** Sizes steps pick with the agent tag `resource_class=<name>`. */
    resourceClasses: Record<string, ResourceClass>;
    priorityClasses: Record<string, string>;
}

/** Spend caps: at most this many worker Jobs, and this much CPU and memory requested by running workers. */
export interface SpendCaps {
    maxConcurrentJobs?: number;
    maxCpu?: string;
    maxMemory?: string;
}
