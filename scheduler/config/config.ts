/**
 * The stack configuration (`pulumi config set scaledkite:<key>`): parsing, defaults and validation.
 *
 * Pure: it reads a plain record of raw values (strings from `pulumi.Config`, or typed values from a
 * `Pulumi.<stack>.yaml` file) and returns the validated configuration, or throws one ConfigError that
 * lists every problem, each naming the key and the fix. Secret keys are only checked for presence
 * here; their values never pass through this module.
 *
 * Defaults, bounds and allowed values come from the declaration (declaration.ts, settings.json). The
 * parse is a sequence of named readers: readers.ts (the value shapes, zod schemas whose messages are
 * this parser's own), workers.ts (the worker settings and queues, one merge rule), sections.ts (the
 * stack-wide sections), access.ts (the token's source, ECR, the Lambdas' VPC); types.ts holds the
 * result's types, which the k8s components import without the parser. zod runs at `pulumi up` only:
 * no Lambda packs it (DEPLOY_TIME_PACKAGES).
 */
import { configError } from "../core/errors";
import type { SchedulerSettings } from "../core/settings";
import { readAgentTokenSource, readEcr } from "./access";
import { CONFIG_KEYS } from "./declaration";
import { isSet, nearestKey, Problems, type Raw } from "./readers";
import {
    readAlarmTopic,
    readCaps,
    readFargate,
    readHooksAndGit,
    readIdentity,
    readLambda,
    readPriorityClasses,
    readResourceClasses,
    readSweep,
} from "./sections";
import type { StackConfig } from "./types";
import { readWorkers } from "./workers";

/**
 * Validates the raw stack configuration. `raw` maps key names (without the `scaledkite:` namespace) to
 * their values; secret keys may map to any placeholder that says they are set. The command line reads
 * stack files without their secrets, so it passes `requireSecrets: false`. Every reader adds its
 * problems; all of them are thrown together, one line each.
 */
export function parseStackConfig(raw: Raw, opts: { requireSecrets?: boolean } = {}): StackConfig {
    const p = new Problems();
    checkKnownKeys(raw, p);
    const identity = readIdentity(raw, p);
    const agentToken = readAgentTokenSource(raw, opts.requireSecrets ?? true, p);
    const sweep = readSweep(raw, p);
    const { defaults, queues } = readWorkers(raw, p, sweep.intervalMinutes > 0 || sweep.stackKey !== undefined);
    const resourceClasses = readResourceClasses(raw, p);
    const priorityClasses = readPriorityClasses(raw, p);
    const { hooks, gitKnownHosts } = readHooksAndGit(raw, p);
    const { fargateSubnetIds, fargateQueues } = readFargate(raw, queues, p);
    const caps = readCaps(raw, queues, p);
    const ecr = readEcr(raw, p);
    if (ecr?.identity === "podIdentity") {
        for (const name of fargateQueues) {
            p.add(
                `queues.${name}.fargate`,
                `cannot use EKS Pod Identity for ECR: Fargate pods do not get it; set scaledkite:workerIdentity irsa (the cluster needs an IAM OIDC provider)`,
            );
        }
    }
    const alarmTopicArn = readAlarmTopic(raw, p);
    const lambda = readLambda(raw, p);
    if (p.list.length > 0) throw configError(p.list);
    return {
        agentToken,
        ...identity,
        defaults,
        queues,
        secrets: {
            env: isSet(raw.env),
            gitCredentials: isSet(raw.gitCredentials),
            gitSsh: isSet(raw.gitSshKey),
            hooks: Object.keys(hooks).length > 0,
            ecr: ecr !== undefined,
        },
        ecr,
        hooks,
        gitKnownHosts,
        fargateSubnetIds,
        caps,
        alarmTopicArn,
        sweep,
        lambda,
        resourceClasses,
        priorityClasses,
    };
}

/** Every key must be a declared setting; a mistyped one gets the nearest as a suggestion. */
function checkKnownKeys(raw: Raw, p: Problems): void {
    const known = new Set(CONFIG_KEYS);
    for (const key of Object.keys(raw)) {
        if (known.has(key)) continue;
        const near = nearestKey(key, CONFIG_KEYS);
        p.add(
            key,
            near
                ? `is not a Scaledkite setting: did you mean scaledkite:${near}?`
                : `is not a Scaledkite setting; see the README's configuration table`,
        );
    }
}

/** The key the stack registers with the Stacks API: its own, or `scaledkite-<stack>` while the sweep is on. */
export function stackKeyOf(config: StackConfig, stackName: string): string | undefined {
    return config.sweep.stackKey ?? (config.sweep.intervalMinutes > 0 ? `scaledkite-${stackName}` : undefined);
}

/** Whether any queue takes its pod from the job (so the scheduler reads jobs through the Stacks API). */
export function readsJobs(config: Pick<StackConfig, "queues">): boolean {
    return Object.values(config.queues).some((q) => q.stepShape !== "none");
}

/**
 * The part of the stack configuration the scheduler needs at run time (no secrets); with the stack's
 * name, the Stacks API it reads jobs from when a queue takes its shape from the job.
 */
export function schedulerSettings(config: StackConfig, stackName = "dev"): SchedulerSettings {
    const stackKey = stackKeyOf(config, stackName);
    return {
        namespace: config.namespace,
        jobPrefix: config.jobPrefix,
        queues: config.queues,
        secrets: config.secrets,
        resourceClasses: config.resourceClasses,
        priorityClasses: config.priorityClasses,
        ...(readsJobs(config) && stackKey ? { stacks: { stackKey, endpoint: config.sweep.endpoint } } : {}),
    };
}
