/**
 * The stack-wide sections of the configuration, one named reader each: what the stack is (cluster,
 * bus, namespace), its git and hook files, Fargate, spend caps, alarms, the sweep and the Lambdas.
 * Each adds its problems to `p` and returns what it read. Pure.
 */
import { DEFAULT_AGENT_ENDPOINT } from "../clients/stacksApi";
import type { ResourceClass, WorkerSettings } from "../core/settings";
import { z } from "zod";
import { readLambdaNetwork } from "./access";
import { setting } from "./declaration";
import {
    checkLabel,
    read,
    RESOURCES,
    STRING_MAP,
    asQuantity,
    asString,
    asStringList,
    asStringMap,
    boolOrDefault,
    DNS1123_LABEL,
    int,
    intOrDefault,
    isSet,
    type Problems,
    type Raw,
    stringOrDefault,
} from "./readers";
import type { LambdaConfig, SpendCaps } from "./types";
import { MAX_JOB_PREFIX_LENGTH } from "./workers";

/** The existing cluster, the event bus, an existing role, and where and how worker Jobs are named. */
export function readIdentity(raw: Raw, p: Problems) {
    const cluster = asString(raw.cluster, "cluster", p);
    if (!cluster)
        p.add(
            "cluster",
            `is required: the name of the existing EKS cluster (pulumi config set scaledkite:cluster <name>)`,
        );
    else if (!/^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$/.test(cluster))
        p.add("cluster", `${JSON.stringify(cluster)} is not an EKS cluster name`);

    const eventBusName = asString(raw.eventBusName, "eventBusName", p);
    if (!eventBusName) {
        p.add(
            "eventBusName",
            `is required: the Buildkite partner event bus, e.g. aws.partner/buildkite.com/<org>/<id> (pulumi config set scaledkite:eventBusName <name>)`,
        );
    } else if (!/^[/.\-_A-Za-z0-9]{1,256}$/.test(eventBusName)) {
        p.add("eventBusName", `${JSON.stringify(eventBusName)} is not an EventBridge event bus name`);
    }

    const roleArn = asString(raw.roleArn, "roleArn", p);
    if (roleArn && !/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/.test(roleArn))
        p.add("roleArn", `${JSON.stringify(roleArn)} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)`);

    const namespace = stringOrDefault(raw, "namespace", p);
    if (!DNS1123_LABEL.test(namespace) || namespace.length > 63)
        p.add(
            "namespace",
            `${JSON.stringify(namespace)} is not a DNS-1123 label: use lowercase letters, digits and '-', at most 63`,
        );

    const jobPrefix = stringOrDefault(raw, "jobPrefix", p);
    if (jobPrefix.length > MAX_JOB_PREFIX_LENGTH) {
        p.add(
            "jobPrefix",
            `${JSON.stringify(jobPrefix)} is ${jobPrefix.length} characters: with the 36-character job UUID a Job name would pass 63; use at most ${MAX_JOB_PREFIX_LENGTH}`,
        );
    } else if (!DNS1123_LABEL.test(jobPrefix + "0")) {
        p.add(
            "jobPrefix",
            `${JSON.stringify(jobPrefix)} would not make a DNS-1123 Job name: use lowercase letters, digits and '-', starting with a letter or digit`,
        );
    }

    return { cluster: cluster!, eventBusName: eventBusName!, roleArn, namespace, jobPrefix };
}

/** The agent hooks (file name -> script) and the known hosts the git SSH key trusts. */
export function readHooksAndGit(raw: Raw, p: Problems): { hooks: Record<string, string>; gitKnownHosts?: string } {
    const hooks =
        asStringMap(raw.hooks, "hooks", p, (name) =>
            /^[a-z][a-z0-9-]*$/.test(name)
                ? undefined
                : `is not an agent hook file name (e.g. environment, pre-checkout, pre-exit)`,
        ) ?? {};
    const gitKnownHosts = asString(raw.gitKnownHosts, "gitKnownHosts", p);
    if (isSet(raw.gitSshKey) && !gitKnownHosts) {
        p.add(
            "gitKnownHosts",
            `is required with gitSshKey, so the agent can check the git server's host key (e.g. pulumi config set scaledkite:gitKnownHosts "$(ssh-keyscan github.com)")`,
        );
    }
    return { hooks, gitKnownHosts };
}

/** The Fargate profiles' subnets, required when a queue runs on Fargate. */
export function readFargate(
    raw: Raw,
    queues: Record<string, WorkerSettings>,
    p: Problems,
): { fargateSubnetIds: string[]; fargateQueues: string[] } {
    const fargateSubnetIds =
        asStringList(raw.fargateSubnetIds, "fargateSubnetIds", p, (id) =>
            /^subnet-[0-9a-f]+$/.test(id) ? undefined : `has ${JSON.stringify(id)}, not a subnet id`,
        ) ?? [];
    const fargateQueues = Object.entries(queues)
        .filter(([, q]) => q.fargate)
        .map(([n]) => n);
    if (fargateQueues.length && fargateSubnetIds.length === 0) {
        p.add(
            "fargateSubnetIds",
            `is required for Fargate queue ${fargateQueues.join(", ")}: the cluster's private subnets (pulumi config set --path 'scaledkite:fargateSubnetIds[0]' subnet-...)`,
        );
    }

    return { fargateSubnetIds, fargateQueues };
}

/** The spend caps; a cap on requests needs every worker container to request that resource. */
export function readCaps(raw: Raw, queues: Record<string, WorkerSettings>, p: Problems): SpendCaps {
    const caps: SpendCaps = {
        maxConcurrentJobs: int(raw, "maxConcurrentJobs", p),
        maxCpu: asQuantity(raw.maxCpu, "maxCpu", p),
        maxMemory: asQuantity(raw.maxMemory, "maxMemory", p),
    };
    // A quota on requests makes the API server refuse pods that request nothing: say so now.
    for (const [resource, cap] of [
        ["cpu", caps.maxCpu],
        ["memory", caps.maxMemory],
    ] as const) {
        if (cap === undefined) continue;
        for (const [name, q] of Object.entries(queues)) {
            for (const container of q.dind !== "none"
                ? (["agent", "command", "dind"] as const)
                : (["agent", "command"] as const)) {
                const r = q.resources[container];
                if (!r.requests?.[resource] && !r.limits?.[resource]) {
                    p.add(
                        `queues.${name}.resources.${container}`,
                        `requests no ${resource}: with scaledkite:max${resource === "cpu" ? "Cpu" : "Memory"} set, every worker container must (e.g. {"requests": {"${resource}": "${resource === "cpu" ? "500m" : "1Gi"}"}})`,
                    );
                }
            }
        }
    }
    return caps;
}

/** The SNS topic the alarms notify, if any. */
export function readAlarmTopic(raw: Raw, p: Problems): string | undefined {
    const alarmTopicArn = asString(raw.alarmTopicArn, "alarmTopicArn", p);
    if (alarmTopicArn && !/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$/.test(alarmTopicArn)) {
        p.add(
            "alarmTopicArn",
            `${JSON.stringify(alarmTopicArn)} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>)`,
        );
    }

    return alarmTopicArn;
}

const RESOURCE_CLASSES = z.record(
    z.string().regex(/^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$/, {
        error: (i) => `has ${JSON.stringify(i.input)}, not a usable class name (letters, digits, '-', '_', '.')`,
    }),
    z.strictObject(
        {
            resources: RESOURCES.optional(),
            nodeSelector: STRING_MAP((k, v) => checkLabel(k, v)).optional(),
        },
        {
            error: (i) =>
                i.code === "unrecognized_keys"
                    ? `is not a field of a resource class: use resources or nodeSelector`
                    : `must be {resources: {requests, limits}, nodeSelector: {...}}`,
        },
    ),
    { error: `must be a map from class name to {resources, nodeSelector}, e.g. ${setting("resourceClasses").example}` },
);

const asResourceClasses = (value: unknown, key: string, p: Problems) =>
    read(RESOURCE_CLASSES, value, key, p, { json: true }) as Record<string, Partial<ResourceClass>> | undefined;

/** The sizes steps pick with `resource_class=<name>`. */
export function readResourceClasses(raw: Raw, p: Problems): Record<string, ResourceClass> {
    const classes = asResourceClasses(raw.resourceClasses, "resourceClasses", p) ?? {};
    const out: Record<string, ResourceClass> = {};
    for (const [name, c] of Object.entries(classes))
        out[name] = { resources: c.resources ?? {}, nodeSelector: c.nodeSelector ?? {} };
    return out;
}

const PRIORITY_CLASSES = z.record(
    z.string().regex(/^-?\d{1,9}$/, {
        error: (i) => `has ${JSON.stringify(i.input)}, not a Buildkite job priority (an integer)`,
    }),
    z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, {
        error: (i) => `maps to ${JSON.stringify(i.input)}, not a PriorityClass name (lower-case DNS subdomain)`,
    }),
    {
        error: `must be a map from the lowest job priority to a PriorityClass name, e.g. ${setting("priorityClasses").example}`,
    },
);

/** The PriorityClasses jobs get by their Buildkite priority. */
export function readPriorityClasses(raw: Raw, p: Problems): Record<string, string> {
    return (
        (read(PRIORITY_CLASSES, raw.priorityClasses, "priorityClasses", p, { json: true }) as
            Record<string, string> | undefined) ?? {}
    );
}

/** The sweep: its interval, stack key, the Stacks API and its grace periods. */
export function readSweep(raw: Raw, p: Problems) {
    const sweep = {
        intervalMinutes: intOrDefault(raw, "sweepInterval", p),
        stackKey: asString(raw.stackKey, "stackKey", p),
        endpoint: stringOrDefault(raw, "agentEndpoint", p),
        podPendingTimeoutSeconds: intOrDefault(raw, "podPendingTimeout", p),
        startFailureGraceSeconds: intOrDefault(raw, "startFailureGrace", p),
        keepQueuesConnected: boolOrDefault(raw, "keepQueuesConnected", p),
        watchWorkers: boolOrDefault(raw, "watchWorkers", p),
    };
    if (sweep.stackKey !== undefined && !/^[A-Za-z0-9][-A-Za-z0-9_.]{0,99}$/.test(sweep.stackKey))
        p.add(
            "stackKey",
            `${JSON.stringify(sweep.stackKey)} is not a usable stack key (letters, digits, '-', '_', '.')`,
        );
    if (
        !/^https:\/\/[^\s/]+(\/\S*)?$/.test(sweep.endpoint) &&
        !/^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?(\/\S*)?$/.test(sweep.endpoint)
    ) {
        p.add(
            "agentEndpoint",
            `${JSON.stringify(sweep.endpoint)} must be an https URL (default ${DEFAULT_AGENT_ENDPOINT})`,
        );
    }

    return sweep;
}

/** The Lambdas and event delivery. */
export function readLambda(raw: Raw, p: Problems): LambdaConfig {
    const lambda: LambdaConfig = {
        // 512 MB: chosen by measurement with AWS's CPU share emulated (npm run bench, phase memory; README
        // Performance): a cold start of 0.4 s instead of 1.8 s at 128 MB, for $0.43 instead of $0.25 per million events.
        memoryMb: intOrDefault(raw, "lambdaMemoryMb", p),
        timeoutSeconds: intOrDefault(raw, "lambdaTimeoutSeconds", p),
        schedulerConcurrency: int(raw, "schedulerConcurrency", p),
        sweepConcurrency: intOrDefault(raw, "sweepConcurrency", p),
        network: readLambdaNetwork(raw, p),
        logRetentionDays: intOrDefault(raw, "logRetentionDays", p),
        retryAttempts: intOrDefault(raw, "retryAttempts", p),
        maxEventAgeSeconds: intOrDefault(raw, "maxEventAgeSeconds", p),
    };
    const RETENTION = [
        1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
    ];
    if (!RETENTION.includes(lambda.logRetentionDays))
        p.add("logRetentionDays", `must be one of CloudWatch's retention periods: ${RETENTION.join(", ")}`);

    return lambda;
}
