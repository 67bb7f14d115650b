/**
 * Which served queue, if any, a job belongs to. Pure.
 *
 * Buildkite's agent query rules are `key=value` strings that an agent must all satisfy; a job without a
 * `queue=` rule targets the `default` queue. Every rule is considered, in any order; values may hold
 * `*` wildcards.
 */

export const DEFAULT_QUEUE = "default";

export type QueueMatch =
    | { matched: true; queue: string; tags: string[] }
    | { matched: false; reason: string };

function splitRule(rule: string): [string, string] {
    const i = rule.indexOf("=");
    return [rule.slice(0, i), rule.slice(i + 1)];
}

function wildcardMatches(pattern: string, value: string): boolean {
    if (!pattern.includes("*")) return pattern === value;
    const re = new RegExp("^" + pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
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
        const asked = queueRules.length > 0 ? queueRules.map((q) => `queue=${q}`).join(", ") : `no queue rule (the "${DEFAULT_QUEUE}" queue)`;
        return { matched: false, reason: `job targets ${asked}, which this stack does not serve (served: ${served.join(", ") || "none"})` };
    }
    const tags = [`queue=${queue}`];
    for (const rule of rules) {
        const [key, value] = splitRule(rule);
        if (key === "queue" || value.includes("*") || tags.includes(rule)) continue;
        // BUILDKITE_AGENT_TAGS is a comma-separated list: a "," would split the tag in two, and the
        // agent, carrying neither half as the rule, could never acquire the job.
        if (rule.includes(",")) {
            return { matched: false, reason: `job rule ${JSON.stringify(rule)} holds a ",", which no buildkite-agent tag can carry (the agent splits tags on commas): change the step's agents rule` };
        }
        tags.push(rule);
    }
    return { matched: true, queue, tags };
}
