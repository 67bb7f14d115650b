/**
 * Which served queue, if any, a job belongs to. Pure.
 *
 * Buildkite's agent query rules are `key=value` strings that an agent must all satisfy; a job without a
 * `queue=` rule targets the `default` queue. Every rule is considered, in any order; values may hold
 * `*` wildcards.
 */

import { JOB_FINISHED, JOB_SCHEDULED } from "./event";

export const DEFAULT_QUEUE = "default";

export type QueueMatch = { matched: true; queue: string; tags: string[] } | { matched: false; reason: string };

function splitRule(rule: string): [string, string] {
    const i = rule.indexOf("=");
    return [rule.slice(0, i), rule.slice(i + 1)];
}

function wildcardMatches(pattern: string, value: string): boolean {
    if (!pattern.includes("*")) return pattern === value;
    const re = new RegExp(
        "^" +
            pattern
                .split("*")
                .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
                .join(".*") +
            "$",
    );
    return re.test(value);
}

/**
 * Finds the served queue a job's rules select. `served` is the list of queue names this stack serves,
 * in a stable order (the first match wins when a wildcard selects several).
 *
 * The tags returned are what the worker's agent must carry to be able to acquire the job:
 * `queue=<queue>` and every other literal rule of the job.
 */
export function matchQueue(rules: readonly string[], served: readonly string[]): QueueMatch {
    const queueRules = rules.filter((r) => splitRule(r)[0] === "queue").map((r) => splitRule(r)[1]);
    const wanted = queueRules.length > 0 ? queueRules : [DEFAULT_QUEUE];
    const queue = served.find((q) => wanted.every((pattern) => wildcardMatches(pattern, q)));
    if (queue === undefined) {
        const asked =
            queueRules.length > 0
                ? queueRules.map((q) => `queue=${q}`).join(", ")
                : `no queue rule (the "${DEFAULT_QUEUE}" queue)`;
        return {
            matched: false,
            reason: `job targets ${asked}, which this stack does not serve (served: ${served.join(", ") || "none"})`,
        };
    }
    const tags = [`queue=${queue}`];
    for (const rule of rules) {
        const [key, value] = splitRule(rule);
        if (key === "queue" || value.includes("*") || tags.includes(rule)) continue;
        // BUILDKITE_AGENT_TAGS is a comma-separated list: a "," would split the tag in two, and the
        // agent, carrying neither half as the rule, could never acquire the job.
        if (rule.includes(",")) {
            return {
                matched: false,
                reason: `job rule ${JSON.stringify(rule)} holds a ",", which no buildkite-agent tag can carry (the agent splits tags on commas): change the step's agents rule`,
            };
        }
        tags.push(rule);
    }
    return { matched: true, queue, tags };
}

/**
 * The EventBridge patterns, for this account and the served queues only: Job Scheduled events, and
 * Job Finished events of jobs that never started (cancelled before a worker ran them).
 */
export function eventPattern(
    accountId: string,
    queues: string[],
    detailType: typeof JOB_SCHEDULED | typeof JOB_FINISHED = JOB_SCHEDULED,
): Record<string, unknown> {
    const job: Record<string, unknown> = {};
    // A job without a queue rule belongs to the default queue, which no array pattern can select;
    // serving it means receiving every such event (the handler ignores foreign ones).
    if (!queues.includes(DEFAULT_QUEUE)) job.agent_query_rules = [...queues].sort().map((q) => `queue=${q}`);
    if (detailType === JOB_FINISHED) job.started_at = [null];
    return {
        account: [accountId],
        "detail-type": [detailType],
        ...(Object.keys(job).length ? { detail: { job } } : {}),
    };
}

/** EventBridge's limit on a rule's event pattern, in characters (adjustable up to 4,096 by a quota request). */
export const MAX_EVENT_PATTERN_LENGTH = 2048;

/** The length of the longest rule pattern for these queues, as the stack writes it (a 12-digit account). Pure. */
export function eventPatternLength(queues: string[]): number {
    return Math.max(
        ...([JOB_SCHEDULED, JOB_FINISHED] as const).map(
            (t) => JSON.stringify(eventPattern("123456789012", queues, t)).length,
        ),
    );
}
