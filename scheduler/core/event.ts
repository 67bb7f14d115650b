/**
 * Parsing and validating Buildkite's EventBridge job events. Pure: no I/O.
 *
 * Buildkite documents the "Job Scheduled" event as an EventBridge envelope whose `detail` carries the
 * job, build, pipeline and organization. Only what scheduling needs is read; `detail.job.state` is not
 * trusted (the documented sample says "assigned" for a scheduled job).
 */
import { invalidEvent } from "./errors";

/** The Buildkite job a worker is made for: everything the manifest and the logs need. */
export interface ScheduledJob {
    uuid: string;
    type: string;
    label?: string;
    stepKey?: string;
    agentQueryRules: string[];
    /** When the job became runnable (ISO 8601): detail.job.runnable_at, else the event's time; for the latency metrics only. */
    runnableAt?: string;
    /** The job's priority (higher first), when the source knows it: the Stacks API's list does, EventBridge's event does not. */
    priority?: number;
    /** When an agent started the job (Job Finished events); absent: it never ran. */
    startedAt?: string;
    /** Why the job finished, e.g. "cancel" (Job Finished events). */
    signalReason?: string;
    build: { uuid?: string; number?: number; branch?: string; commit?: string; source?: string };
    pipeline: { uuid?: string; slug?: string };
    organization: { uuid?: string; slug?: string };
}

/** A parsed event: its detail-type, and the job it is about. */
export interface JobEvent {
    detailType: string;
    id?: string;
    /** The EventBridge envelope's `source` and `account`, when it has them. */
    source?: string;
    account?: string;
    job: ScheduledJob;
}

/** Where the stack's events come from: its account, and the partner event source of its bus. */
export interface EventOrigin {
    account: string;
    /** The event bus's name; a partner bus (`aws.partner/…`) is named after its only source. */
    eventBusName: string;
}

/** The prefix of every Buildkite partner event source. */
export const BUILDKITE_SOURCE_PREFIX = "aws.partner/buildkite.com/";

/**
 * Why an event did not come from the stack's own Buildkite event source, or undefined when it did:
 * its account must be the stack's, and its source Buildkite's (the bus's own, on a partner bus). Pure.
 */
export function foreignOrigin(event: Pick<JobEvent, "source" | "account">, origin: EventOrigin): string | undefined {
    if (event.account !== origin.account) {
        return `event is from account ${JSON.stringify(event.account ?? null)}, not this stack's ${origin.account}: only the stack's own EventBridge rule should deliver to its queue`;
    }
    const expected = origin.eventBusName.startsWith("aws.partner/") ? origin.eventBusName : undefined;
    if (expected ? event.source !== expected : !event.source?.startsWith(BUILDKITE_SOURCE_PREFIX)) {
        return `event source ${JSON.stringify(event.source ?? null)} is not ${expected ? `the stack's event source ${expected}` : `a Buildkite partner event source (${BUILDKITE_SOURCE_PREFIX}…)`}`;
    }
    return undefined;
}

export const JOB_SCHEDULED = "Job Scheduled";
export const JOB_FINISHED = "Job Finished";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** `key=value`: no white space and no control character (a NUL would pass into the agent's tags). */
const RULE = /^[^=\s\p{Cc}]+=[^\s\p{Cc}]*$/u;
/**
 * The most text a job's rules may hold together. They become the agent container's
 * BUILDKITE_AGENT_TAGS, and Linux refuses one environment string over 128 KiB (MAX_ARG_STRLEN), so
 * the container could never start; Buildkite's own rules are a few short tags.
 */
export const MAX_RULES_LENGTH = 16 * 1024;

function isObject(v: unknown): v is Record<string, unknown> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

function optionalString(obj: Record<string, unknown>, key: string, where: string): string | undefined {
    const v = obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") throw invalidEvent(`${where}.${key} must be a string, got ${typeof v}`);
    return v;
}

function optionalObject(obj: Record<string, unknown>, key: string, where: string): Record<string, unknown> {
    const v = obj[key];
    if (v === undefined || v === null) return {};
    if (!isObject(v)) throw invalidEvent(`${where}.${key} must be an object`);
    return v;
}

/**
 * Validates an EventBridge event (an object, or its JSON text) and returns the job it is about.
 * Throws an InvalidEventError (see errors.ts), whose message says what is wrong, for anything malformed.
 */
export function parseJobEvent(raw: unknown): JobEvent {
    let event = raw;
    if (typeof raw === "string" || Buffer.isBuffer(raw)) {
        try {
            event = JSON.parse(raw.toString());
        } catch (e) {
            throw invalidEvent(`event is not valid JSON (${(e as Error).message})`);
        }
    }
    if (!isObject(event)) {
        throw invalidEvent(
            `event must be a JSON object, got ${event === null ? "null" : Array.isArray(event) ? "an array" : typeof event}`,
        );
    }
    const detailType = event["detail-type"];
    if (typeof detailType !== "string" || detailType === "") {
        throw invalidEvent(`event has no "detail-type": is this an EventBridge event from Buildkite?`);
    }
    const detail = event.detail;
    if (!isObject(detail)) throw invalidEvent(`event has no "detail" object`);
    const job = detail.job;
    if (!isObject(job)) throw invalidEvent(`event detail has no "job" object (detail-type "${detailType}")`);

    const uuid = job.uuid;
    if (typeof uuid !== "string" || !UUID.test(uuid)) {
        throw invalidEvent(`detail.job.uuid must be a UUID, got ${JSON.stringify(uuid) ?? "nothing"}`);
    }
    const type = job.type;
    if (typeof type !== "string" || type === "") throw invalidEvent(`detail.job.type must be a non-empty string`);

    const rules = job.agent_query_rules ?? [];
    if (!Array.isArray(rules)) throw invalidEvent(`detail.job.agent_query_rules must be a list of "key=value" strings`);
    for (const rule of rules) {
        if (typeof rule !== "string" || !RULE.test(rule)) {
            throw invalidEvent(
                `detail.job.agent_query_rules has ${JSON.stringify(rule)}, not a "key=value" rule (no spaces or control characters)`,
            );
        }
    }
    const rulesLength = (rules as string[]).reduce((n, r) => n + r.length + 1, 0);
    if (rulesLength > MAX_RULES_LENGTH) {
        throw invalidEvent(
            `detail.job.agent_query_rules hold ${rulesLength} characters, more than the ${MAX_RULES_LENGTH} an agent's tags may: shorten the step's agents rules`,
        );
    }

    const build = optionalObject(detail, "build", "detail");
    const pipeline = optionalObject(detail, "pipeline", "detail");
    const organization = optionalObject(detail, "organization", "detail");
    const number = build.number;
    // A safe integer: 1e21 is an integer too, but String() writes it as "1e+21", which no label takes.
    if (
        number !== undefined &&
        number !== null &&
        (typeof number !== "number" || !Number.isSafeInteger(number) || number < 0)
    ) {
        throw invalidEvent(
            `detail.build.number must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER}, got ${JSON.stringify(number)}`,
        );
    }

    return {
        detailType,
        id: typeof event.id === "string" ? event.id : undefined,
        source: typeof event.source === "string" ? event.source : undefined,
        account: typeof event.account === "string" ? event.account : undefined,
        job: {
            uuid: uuid.toLowerCase(),
            type,
            label: optionalString(job, "label", "detail.job"),
            stepKey: optionalString(job, "step_key", "detail.job"),
            agentQueryRules: rules as string[],
            runnableAt: isoTime(job.runnable_at) ?? isoTime(event.time),
            priority: Number.isSafeInteger(job.priority) ? (job.priority as number) : undefined,
            startedAt: optionalString(job, "started_at", "detail.job"),
            signalReason: optionalString(job, "signal_reason", "detail.job"),
            build: {
                uuid: optionalString(build, "uuid", "detail.build"),
                number: typeof number === "number" ? number : undefined,
                branch: optionalString(build, "branch", "detail.build"),
                commit: optionalString(build, "commit", "detail.build"),
                source: optionalString(build, "source", "detail.build"),
            },
            pipeline: {
                uuid: optionalString(pipeline, "uuid", "detail.pipeline"),
                slug: optionalString(pipeline, "slug", "detail.pipeline"),
            },
            organization: {
                uuid: optionalString(organization, "uuid", "detail.organization"),
                slug: optionalString(organization, "slug", "detail.organization"),
            },
        },
    };
}

/**
 * A timestamp as ISO 8601, from Buildkite's "2019-08-11 06:01:14 UTC" or an ISO string; undefined for
 * anything else. A bad timestamp never makes an event invalid: it only feeds a metric. Pure.
 */
export function isoTime(value: unknown): string | undefined {
    if (typeof value !== "string") return undefined;
    const t = Date.parse(value.replace(/^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?) UTC$/, "$1T$2Z"));
    return Number.isNaN(t) ? undefined : new Date(t).toISOString();
}

/** The Buildkite web address of a job, when the event says enough to build it. */
export function jobUrl(job: ScheduledJob): string | undefined {
    const { organization, pipeline, build } = job;
    if (!organization.slug || !pipeline.slug || build.number === undefined) return undefined;
    return `https://buildkite.com/${organization.slug}/${pipeline.slug}/builds/${build.number}#${job.uuid}`;
}
