/**
 * The one declaration of every setting (scheduler/config/declaration.ts) against everything that
 * states a setting: the parser's defaults, bounds and allowed values, the README's table, Pulumi.yaml's
 * typed config block, Pulumi.dev.yaml, and every example the README and Pulumi.dev.yaml show.
 */
import * as assert from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { load } from "js-yaml";
import { readStackFile } from "../../scheduler/cli/inputs";
import { parseStackConfig, schedulerSettings } from "../../scheduler/config/config";
import { DEFAULT_AGENT_ENDPOINT } from "../../scheduler/clients/stacksApi";
import {
    CONFIG_KEYS,
    DEFAULT_DIND_IMAGE,
    DEFAULT_DIND_ROOTLESS_IMAGE,
    renderPulumiConfig,
    type Setting,
    SETTINGS,
    WORKER_KEYS,
} from "../../scheduler/config/declaration";
import { PULUMI_CONFIG_MARK, withPulumiConfig, withTable } from "../../scheduler/config/writeDocs";
import { decide } from "../../scheduler/schedule/lambda";
import { rawConfig, sampleEvent } from "../helpers/builders";
import { PROJECT_ROOT } from "../helpers/pulumiProgram";
import { WORKER_DEFAULTS, mergeWorker } from "../../scheduler/config/workers";
import { type StackConfig } from "../../scheduler/config/types";

const SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ci/bk-token-AbC123";
const read = (file: string) => fs.readFileSync(path.join(PROJECT_ROOT, file), "utf8");

/** The parsed value of each setting that has a plain default, as the program uses it. */
const PARSED: Record<string, (c: StackConfig) => unknown> = {
    namespace: (c) => c.namespace,
    jobPrefix: (c) => c.jobPrefix,
    tokenSyncInterval: () =>
        (
            parseStackConfig(rawConfig({ agentToken: undefined, agentTokenSecretArn: SECRET_ARN })).agentToken as {
                intervalMinutes?: number;
            }
        ).intervalMinutes,
    workerIdentity: () =>
        parseStackConfig(rawConfig({ ecrRegistries: ["123456789012.dkr.ecr.us-east-1.amazonaws.com"] })).ecr?.identity,
    image: (c) => c.defaults.image,
    dind: (c) => c.defaults.dind,
    activeDeadlineSeconds: (c) => c.defaults.activeDeadlineSeconds,
    ttlSecondsAfterFinished: (c) => c.defaults.ttlSecondsAfterFinished,
    backoffLimit: (c) => c.defaults.backoffLimit,
    terminationGracePeriodSeconds: (c) => c.defaults.terminationGracePeriodSeconds,
    fargate: (c) => c.defaults.fargate,
    sweepInterval: (c) => c.sweep.intervalMinutes,
    agentEndpoint: (c) => c.sweep.endpoint,
    podPendingTimeout: (c) => c.sweep.podPendingTimeoutSeconds,
    startFailureGrace: (c) => c.sweep.startFailureGraceSeconds,
    keepQueuesConnected: (c) => c.sweep.keepQueuesConnected,
    watchWorkers: (c) => c.sweep.watchWorkers,
    lambdaMemoryMb: (c) => c.lambda.memoryMb,
    lambdaTimeoutSeconds: (c) => c.lambda.timeoutSeconds,
    sweepConcurrency: (c) => c.lambda.sweepConcurrency,
    logRetentionDays: (c) => c.lambda.logRetentionDays,
    retryAttempts: (c) => c.lambda.retryAttempts,
    maxEventAgeSeconds: (c) => c.lambda.maxEventAgeSeconds,
};

/** A stack with this setting at `value` (and what its example needs beside it). */
function stackWith(s: Setting, value: unknown): Record<string, unknown> {
    const base = rawConfig(s.exampleWith);
    if (s.key === "agentTokenSecretArn" || s.exampleWith?.agentTokenSecretArn) delete base.agentToken;
    return { ...base, [s.key]: s.secret ? "<secret>" : value };
}

/** The Job a stack's settings make for the sample event. */
function renders(raw: Record<string, unknown>): void {
    const settings = schedulerSettings(parseStackConfig(raw, { requireSecrets: false }));
    for (const queue of Object.keys(settings.queues)) {
        const event = sampleEvent();
        event.detail.job.agent_query_rules = [`queue=${queue}`];
        const verdict = decide(settings, event);
        assert.strictEqual(verdict.outcome, "schedule", `queue ${queue}: ${JSON.stringify(verdict).slice(0, 300)}`);
    }
}

describe("the declaration of every setting", () => {
    it("declares each key once, with a description, an example, and bounds for every integer", () => {
        assert.strictEqual(new Set(CONFIG_KEYS).size, SETTINGS.length);
        for (const s of SETTINGS) {
            assert.ok(s.description.length > 10 && s.example !== "", s.key);
            if (s.type === "integer") assert.ok(s.min !== undefined && s.max !== undefined, `${s.key} has bounds`);
            if (s.scope === "worker") assert.ok(s.merge, `${s.key} says how a queue's value meets the stack's`);
        }
    });

    it("settings.json holds only what Setting declares, with known values", () => {
        const fields = [
            "key",
            "type",
            "scope",
            "required",
            "secret",
            "default",
            "defaultText",
            "min",
            "max",
            "values",
            "merge",
            "example",
            "exampleText",
            "exampleWith",
            "description",
        ];
        for (const s of SETTINGS) {
            for (const f of Object.keys(s)) assert.ok(fields.includes(f), `${s.key}: unknown field ${f}`);
            assert.ok(["string", "integer", "boolean", "json"].includes(s.type), `${s.key}: type ${s.type}`);
            assert.ok(["stack", "worker"].includes(s.scope), `${s.key}: scope ${s.scope}`);
            assert.ok(
                s.merge === undefined || ["map", "list", "replace"].includes(s.merge),
                `${s.key}: merge ${s.merge}`,
            );
            if (s.default !== undefined)
                assert.strictEqual(
                    typeof s.default,
                    s.type === "integer" ? "number" : s.type,
                    `${s.key}: its default's type`,
                );
        }
        assert.strictEqual(
            SETTINGS.find((s) => s.key === "agentEndpoint")!.default,
            DEFAULT_AGENT_ENDPOINT,
            "the Stacks API client's default",
        );
        const dindImage = SETTINGS.find((s) => s.key === "dindImage")!.defaultText!;
        assert.ok(dindImage.includes(DEFAULT_DIND_IMAGE) && dindImage.includes(DEFAULT_DIND_ROOTLESS_IMAGE), dindImage);
    });

    it("the parser's defaults are the declared ones", () => {
        const c = parseStackConfig(rawConfig());
        const withDefault = SETTINGS.filter((s) => s.default !== undefined);
        assert.deepStrictEqual(
            withDefault.map((s) => s.key).sort(),
            Object.keys(PARSED).sort(),
            "every plain default is checked",
        );
        for (const s of withDefault) assert.strictEqual(PARSED[s.key](c), s.default, s.key);
    });

    describe("the parser keeps to the declared bounds and values, and says them", () => {
        for (const s of SETTINGS.filter((x) => x.type === "integer")) {
            it(`${s.key}: ${s.min} to ${s.max}`, () => {
                for (const bad of [s.min! - 1, s.max! + 1]) {
                    assert.throws(
                        () => parseStackConfig(stackWith(s, bad)),
                        new RegExp(`scaledkite:${s.key} must be a whole number from ${s.min} to ${s.max}`),
                    );
                }
                for (const good of [s.min!, s.max!]) {
                    if (s.key === "lambdaTimeoutSeconds" || (s.key === "sweepInterval" && good === 0)) continue;
                    assert.doesNotThrow(() => parseStackConfig(stackWith(s, good)), s.key);
                }
            });
        }
        for (const s of SETTINGS.filter((x) => x.values)) {
            it(`${s.key}: ${s.values!.join(", ")}`, () => {
                for (const v of s.values!) assert.doesNotThrow(() => parseStackConfig(stackWith(s, v)));
                assert.throws(
                    () => parseStackConfig(stackWith(s, "other")),
                    new RegExp(`scaledkite:${s.key} must be ${s.values![0]}`),
                );
            });
        }
        it("a queue may set exactly the worker keys", () => {
            for (const key of WORKER_KEYS) assert.strictEqual(SETTINGS.find((s) => s.key === key)!.scope, "worker");
            assert.throws(
                () => parseStackConfig(rawConfig({ queues: { a: { namespace: "x" } } })),
                /queues.a.namespace is not a queue setting/,
            );
        });
    });

    describe("a queue's value meets the stack's by its key's declared rule", () => {
        const values = {
            map: [{ a: "1", b: "1" }, { b: "2" }, { a: "1", b: "2" }],
            list: [["x"], ["y", "x"], ["x", "y"]],
            replace: ["B", "O", "O"],
        } as const;
        for (const s of SETTINGS.filter((x) => x.scope === "worker")) {
            it(`${s.key}: ${s.merge}`, () => {
                const [below, own, expected] = values[s.merge!];
                const merged = mergeWorker(
                    { ...WORKER_DEFAULTS, [s.key]: below },
                    { [s.key]: own },
                ) as unknown as Record<string, unknown>;
                assert.deepStrictEqual(merged[s.key], expected);
                const kept = mergeWorker({ ...WORKER_DEFAULTS, [s.key]: below }, {}) as unknown as Record<
                    string,
                    unknown
                >;
                assert.deepStrictEqual(kept[s.key], below, "nothing of the queue's own: the stack's");
            });
        }
    });

    describe("every example renders a Job", () => {
        for (const s of SETTINGS) {
            it(`${s.key}: ${s.example.slice(0, 60)}`, () => {
                const value = s.type === "json" ? JSON.parse(s.example) : s.example;
                renders(stackWith(s, value));
            });
        }
    });

    it("Pulumi.dev.yaml, as it is and with every commented example on, sets only declared keys and renders a Job for every queue", () => {
        const text = read("Pulumi.dev.yaml");
        // A commented key (`# scaledkite:key: value`) and a commented queue (`# name:` and its lines).
        const on = text
            .replace(/^ {2}# (scaledkite:\w+:.*)$/gm, "  $1")
            .replace(/^ {4}# ([\w-]+:.*)$/gm, "    $1")
            .replace(/^ {4}# {3}(.*)$/gm, "      $1");
        assert.notStrictEqual(on, text);
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "scaledkite-dev-"));
        for (const [name, body] of [
            ["as it is", text],
            ["with every example on", on],
        ]) {
            const file = path.join(dir, "Pulumi.x.yaml");
            fs.writeFileSync(file, body);
            const raw = readStackFile(file);
            for (const key of Object.keys(raw)) assert.ok(CONFIG_KEYS.includes(key), `${name}: ${key} is declared`);
            renders(raw);
        }
        // The README says Pulumi.dev.yaml shows every key: stack-wide, or per queue.
        const shown = (key: string) => new RegExp(`scaledkite:${key}\\b|^\\s*#?\\s*${key}:`, "m").test(text);
        assert.deepStrictEqual(
            CONFIG_KEYS.filter((k) => !shown(k)),
            [],
            "keys Pulumi.dev.yaml does not show",
        );
        const queues = Object.keys((readStackFile(path.join(dir, "Pulumi.x.yaml")).queues ?? {}) as object);
        assert.deepStrictEqual(
            queues,
            ["dynamic", "docker-free", "arm", "deploy", "release", "small"],
            "the commented queues are on",
        );
        fs.rmSync(dir, { recursive: true, force: true });
    });

    it("the README's configuration table is the declaration's (npm run docs writes it)", () => {
        const readme = read("README.md");
        assert.strictEqual(
            withTable(readme),
            readme,
            "README.md's table differs from scheduler/config/declaration.ts: run npm run docs",
        );
    });

    it("Pulumi.yaml's config block is the declaration's (npm run docs writes it)", () => {
        const project = read("Pulumi.yaml");
        assert.ok(project.includes(PULUMI_CONFIG_MARK));
        assert.strictEqual(
            withPulumiConfig(project),
            project,
            "Pulumi.yaml's config block differs from scheduler/config/declaration.ts: run npm run docs",
        );
        const config = (load(project) as { config: Record<string, { type: string; default?: unknown }> }).config;
        assert.deepStrictEqual(config, renderPulumiConfig());
        assert.deepStrictEqual(
            Object.keys(config).filter((k) => !("default" in config[k])),
            ["scaledkite:cluster", "scaledkite:eventBusName"],
            "Pulumi requires a declared key without a default",
        );
    });

    it("Pulumi.dev.yaml's values have the types Pulumi.yaml declares (as Pulumi checks them)", () => {
        const declared = (load(read("Pulumi.yaml")) as { config: Record<string, { type: string }> }).config;
        const stack = (load(read("Pulumi.dev.yaml")) as { config: Record<string, unknown> }).config;
        const fits: Record<string, (v: unknown) => boolean> = {
            string: (v) => typeof v === "string",
            integer: (v) => Number.isInteger(v) || (typeof v === "string" && /^-?\d+$/.test(v)),
            boolean: (v) => typeof v === "boolean" || v === "true" || v === "false",
        };
        let checked = 0;
        for (const [key, value] of Object.entries(stack)) {
            if (!declared[key]) continue;
            assert.ok(fits[declared[key].type](value), `${key}: ${JSON.stringify(value)} is not ${declared[key].type}`);
            checked++;
        }
        assert.ok(checked >= 15, `${checked} values checked`);
    });
});
