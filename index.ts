/**
 * Scaledkite: on-demand Buildkite workers on an existing EKS cluster.
 *
 *   Buildkite --"Job Scheduled"--> EventBridge rule --> SQS queue --> Lambda --> one Kubernetes Job per Buildkite job
 *
 * Data flow of this program: stack config -> validated StackConfig -> the existing cluster (read once)
 * -> the workers' namespace, Secrets, RBAC and admission policy (k8s/) -> the rules, event queue, DLQ and Lambdas (scheduler/)
 * -> the dashboard of their metrics.
 */
import * as pulumi from "@pulumi/pulumi";
import { createClusterProvider, readCluster } from "./k8s/cluster";
import { WorkerEcrAccess } from "./k8s/ecr";
import { createFargateProfiles } from "./k8s/fargate";
import { SWEEPER_GROUP, TOKEN_SYNC_GROUP } from "./k8s/rbac";
import { SCHEDULER_GROUP, WorkerNamespace } from "./k8s/workerNamespace";
import { podSecurityLabels, privilegedDindWarning, workerShape } from "./k8s/workerPolicy";
import { readStackConfig } from "./scheduler/config/pulumiConfig";
import { readsJobs, schedulerSettings } from "./scheduler/config/config";
import { createDashboard } from "./scheduler/aws/dashboard";
import { Scheduler } from "./scheduler/schedule/component";
import { Sweeper } from "./scheduler/sweep/component";
import { TokenSyncer } from "./scheduler/tokenSync/component";
import { WORKER_SERVICE_ACCOUNT } from "./scheduler/core/names";

const { config, secrets } = readStackConfig(new pulumi.Config("scaledkite"));
const rootDind = privilegedDindWarning(config.queues);
if (rootDind) void pulumi.log.warn(rootDind);

const cluster = readCluster(config.cluster);
const provider = createClusterProvider("cluster", cluster);

const workers = new WorkerNamespace("workers", {
    namespace: config.namespace,
    agentToken:
        config.agentToken.kind === "secretsManager"
            ? { secretsManagerArn: config.agentToken.arn, syncGroup: TOKEN_SYNC_GROUP }
            : { value: secrets.agentToken! },
    env: secrets.env,
    gitCredentials: secrets.gitCredentials,
    gitSsh: secrets.gitSshKey && { key: secrets.gitSshKey, knownHosts: config.gitKnownHosts! },
    hooks: config.hooks,
    caps: config.caps,
    schedulerGroup: SCHEDULER_GROUP,
    schedulerReadsJobs: readsJobs(config),
    sweeperGroup: config.sweep.intervalMinutes > 0 ? SWEEPER_GROUP : undefined,
    workerShape: workerShape(config.queues, config.ecr ? WORKER_SERVICE_ACCOUNT : undefined),
    podSecurity: podSecurityLabels(config.queues),
    provider,
});

// ECR: the workers' IAM role, bound to their service account, and the login hook.
const ecr =
    config.ecr &&
    new WorkerEcrAccess("ecr", {
        clusterName: config.cluster,
        oidcIssuer: cluster.oidcIssuer,
        namespace: workers.namespace,
        registries: config.ecr.registries,
        identity: config.ecr.identity,
        provider,
    });

createFargateProfiles("workers", {
    clusterName: config.cluster,
    namespace: config.namespace,
    queues: Object.keys(config.queues).filter((q) => config.queues[q].fargate),
    subnetIds: config.fargateSubnetIds,
});

// What the token sync and the sweep, cluster-facing Lambdas of their own, share.
const clusterLambda = {
    cluster,
    logRetentionDays: config.lambda.logRetentionDays,
    network: config.lambda.network,
    alarmTopicArn: config.alarmTopicArn,
};

// With the token in Secrets Manager, the sync copies it into the workers' Secret (now and on rotation).
const tokenSync =
    config.agentToken.kind === "secretsManager"
        ? new TokenSyncer(
              "token-sync",
              {
                  secretArn: config.agentToken.arn,
                  jsonKey: config.agentToken.jsonKey,
                  intervalMinutes: config.agentToken.intervalMinutes,
                  namespace: config.namespace,
                  kubernetesGroups: [TOKEN_SYNC_GROUP],
                  targetUid: workers.agentTokenSecretUid,
                  ...clusterLambda,
              },
              { dependsOn: [workers] },
          )
        : undefined;

const scheduler = new Scheduler(
    "scheduler",
    {
        settings: schedulerSettings(config, pulumi.getStack()),
        cluster,
        eventBusName: config.eventBusName,
        kubernetesGroups: [SCHEDULER_GROUP],
        roleArn: config.roleArn,
        alarmTopicArn: config.alarmTopicArn,
        lambda: config.lambda,
    },
    { dependsOn: ecr ? [workers, ecr] : [workers] },
);

const sweeper =
    config.sweep.intervalMinutes > 0
        ? new Sweeper(
              "sweep",
              {
                  settings: schedulerSettings(config, pulumi.getStack()),
                  intervalMinutes: config.sweep.intervalMinutes,
                  stackKey: config.sweep.stackKey ?? `scaledkite-${pulumi.getStack()}`,
                  endpoint: config.sweep.endpoint,
                  podPendingTimeoutSeconds: config.sweep.podPendingTimeoutSeconds,
                  startFailureGraceSeconds: config.sweep.startFailureGraceSeconds,
                  keepQueuesConnected: config.sweep.keepQueuesConnected,
                  watchWorkers: config.sweep.watchWorkers,
                  kubernetesGroups: [SWEEPER_GROUP],
                  timeoutSeconds: config.lambda.timeoutSeconds,
                  reservedConcurrency: config.lambda.sweepConcurrency,
                  ...clusterLambda,
              },
              { dependsOn: tokenSync ? [workers, tokenSync] : [workers] },
          )
        : undefined;

// What it did and how long users waited: one dashboard per stack.
const dashboard = createDashboard("dashboard", {
    namespace: workers.namespace,
    queues: Object.keys(config.queues),
    schedulerFunction: scheduler.functionName,
    sweepFunction: sweeper?.functionName,
    deadLetterQueue: scheduler.deadLetterQueueName,
    eventQueue: scheduler.eventQueueName,
});

export const namespace = workers.namespace;
export const queues = Object.keys(config.queues);
export const functionName = scheduler.functionName;
export const schedulerRoleArn = scheduler.roleArn;
export const eventRuleArn = scheduler.ruleArn;
export const cancelRuleArn = scheduler.cancelRuleArn;
export const deadLetterQueueUrl = scheduler.deadLetterQueueUrl;
export const eventQueueUrl = scheduler.eventQueueUrl;
export const logGroupName = scheduler.logGroupName;
export const dashboardName = dashboard.dashboardName;
export const sweepFunctionName = sweeper?.functionName ?? "sweep off";
export const workerRoleArn = ecr?.roleArn ?? "no ECR registries";
export const agentTokenSource =
    config.agentToken.kind === "secretsManager" ? config.agentToken.arn : "pulumi config (secret)";
export const tokenSyncFunctionName = tokenSync?.functionName ?? "no sync (token from pulumi config)";
export const watchWorkers = pulumi.interpolate`kubectl get jobs,pods -n ${workers.namespace} -l app.kubernetes.io/managed-by=scaledkite`;
