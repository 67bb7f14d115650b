/** Builders for test fixtures: a valid thing by default, changed one field at a time. */
import * as fs from "fs";
import * as path from "path";
import { parseStackConfig, schedulerSettings } from "../../scheduler/config/config";
import { type SchedulerSettings } from "../../scheduler/core/settings";
import type { StacksJob } from "../../scheduler/clients/stacksApi";

export const SAMPLE_EVENT_FILE = path.join(__dirname, "..", "fixtures", "job-scheduled.json");

/** The documented Job Scheduled event (a fresh copy each call). */
export function sampleEvent(): any {
    return JSON.parse(fs.readFileSync(SAMPLE_EVENT_FILE, "utf8"));
}

let counter = 0;
/** A distinct, valid job UUID. */
export function newUuid(): string {
    counter++;
    const hex = (Date.now().toString(16) + counter.toString(16).padStart(8, "0") + Math.random().toString(16).slice(2))
        .padEnd(32, "0")
        .slice(-32);
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** An event builder. */
export class EventBuilder {
    private readonly e = sampleEvent();
    uuid(u: string): this {
        this.e.detail.job.uuid = u;
        return this;
    }
    rules(r: unknown): this {
        this.e.detail.job.agent_query_rules = r;
        return this;
    }
    queue(q: string): this {
        return this.rules([`queue=${q}`]);
    }
    type(t: unknown): this {
        this.e.detail.job.type = t;
        return this;
    }
    detailType(t: unknown): this {
        this.e["detail-type"] = t;
        return this;
    }
    /** When the job became runnable, in Buildkite's format ("2026-11-28 10:00:00 UTC") or any other. */
    runnableAt(t: unknown): this {
        this.e.detail.job.runnable_at = t;
        return this;
    }
    with(mutate: (e: any) => void): this {
        mutate(this.e);
        return this;
    }
    build(): any {
        return JSON.parse(JSON.stringify(this.e));
    }
}

/** A scheduled job as the Stacks API lists it, on `queue`. */
export function aStacksJob(queue: string, overrides: Partial<StacksJob> = {}): StacksJob {
    return {
        id: newUuid(),
        priority: 0,
        agent_query_rules: [`queue=${queue}`],
        scheduled_at: new Date().toISOString(),
        pipeline: { slug: "my-pipeline" },
        build: { number: 7, branch: "main" },
        step: { key: "test", label: ":test: Test" },
        ...overrides,
    };
}

export function anEvent(): EventBuilder {
    return new EventBuilder().uuid(newUuid());
}

/**
 * Raw config (keys without the namespace) that passes validation. Its queues take nothing from the
 * job (stepShape none: the handler needs no Stacks API) unless a test says otherwise.
 */
export function rawConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return {
        cluster: "ci-cluster",
        eventBusName: "aws.partner/buildkite.com/my-org/abc",
        agentToken: "<secret>",
        stepShape: "none",
        ...overrides,
    };
}

/** Scheduler settings from raw config overrides. */
export function settingsFor(overrides: Record<string, unknown> = {}): SchedulerSettings {
    return schedulerSettings(parseStackConfig(rawConfig(overrides)));
}
