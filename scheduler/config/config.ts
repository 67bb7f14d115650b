/**
 * The stack configuration (`pulumi config set scaledkite:<key>`): parsing, defaults and validation.
 *
 * Pure: it reads a plain record of raw values (strings from `pulumi.Config`, or typed values from a
 * `Pulumi.<stack>.yaml` file) and returns the validated configuration, or throws one ConfigError that
 * lists every problem, each naming the key and the fix. Secret keys are only checked for presence
 * here; their values never pass through this module.
 *
 * Defaults, bounds and allowed values come from the declaration (declaration.ts, settings.json). The
 * shapes of values are zod schemas whose messages are this parser's own (`read()` turns each issue
 * into `scaledkite:<key><path> <message>`); what crosses keys (Fargate and dind, caps and requests,
 * the token's source) is plain code below. zod runs at `pulumi up` only: no Lambda packs it
 * (DEPLOY_TIME_PACKAGES).
 */
import { z } from "zod";
import { agentImageVersion, compareVersions, MIN_AGENT_VERSION } from "../core/agentLauncher";
import { configError } from "../core/errors";
import { AGENT_DYNAMIC_ENV, AGENT_FIXED_ENV } from "../core/manifest";
import { patchViolations, POD_BOUNDARY } from "../core/podBoundary";
import { DEFAULT_AGENT_ENDPOINT } from "../clients/stacksApi";
import { eventPatternLength, MAX_EVENT_PATTERN_LENGTH } from "../core/queue";
import { SECRET_ARN } from "../clients/secretsManager";
import { type DindMode, type SchedulerSettings, type Toleration, type WorkerSettings } from "../core/settings";
import {
    CONFIG_KEYS,
    DEFAULT_DIND_IMAGE,
    DEFAULT_DIND_ROOTLESS_IMAGE,
    DEFAULT_IMAGE,
    SECRET_KEYS,
    setting,
    WORKER_KEYS,
} from "./declaration";

export { CONFIG_KEYS, DEFAULT_DIND_IMAGE, DEFAULT_DIND_ROOTLESS_IMAGE, DEFAULT_IMAGE, SECRET_KEYS };

/** The sidecar's image when the stack sets none: the stock image for the queue's mode. */
export function defaultDindImage(mode: DindMode): string {
    return mode === "rootless" ? DEFAULT_DIND_ROOTLESS_IMAGE : DEFAULT_DIND_IMAGE;
}
/** Job names are `<jobPrefix><job uuid>`: a DNS-1123 label of at most 63 characters. */
export const JOB_UUID_LENGTH = 36;
export const MAX_JOB_PREFIX_LENGTH = 63 - JOB_UUID_LENGTH;

/** The declared default of a plain worker key. */
const declared = <T>(key: keyof WorkerSettings) => setting(key).default as T;

/** Stack-wide worker defaults, before the stack's own values (plain ones as declared). */
export const WORKER_DEFAULTS: WorkerSettings = {
    image: declared("image"),
    dind: declared("dind"),
    dindImage: DEFAULT_DIND_IMAGE,
    resources: {
        // The agent only coordinates: the build runs in the command container.
        agent: { requests: { cpu: "100m", memory: "128Mi" } },
        command: { requests: { cpu: "500m", memory: "1Gi" } },
        dind: { requests: { cpu: "500m", memory: "1Gi" } },
    },
    nodeSelector: {},
    tolerations: [],
    activeDeadlineSeconds: declared("activeDeadlineSeconds"),
    ttlSecondsAfterFinished: declared("ttlSecondsAfterFinished"),
    backoffLimit: declared("backoffLimit"),
    agentTags: [],
    env: {},
    labels: {},
    annotations: {},
    terminationGracePeriodSeconds: declared("terminationGracePeriodSeconds"),
    envFrom: [],
    fargate: declared("fargate"),
};

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
    };
    lambda: LambdaConfig;
}

/** Spend caps: at most this many worker Jobs, and this much CPU and memory requested by running workers. */
export interface SpendCaps {
    maxConcurrentJobs?: number;
    maxCpu?: string;
    maxMemory?: string;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUANTITY = /^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E|[eE][+-]?[0-9]+)?$/;
const LABEL_KEY =
    /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const QUEUE_NAME = /^[A-Za-z0-9][-A-Za-z0-9_.]{0,99}$/;

/** Collects problems; every message is one line naming the key and what to do. */
class Problems {
    readonly list: string[] = [];
    add(key: string, message: string): void {
        this.list.push(`scaledkite:${key} ${message}`);
    }
}

type Raw = Record<string, unknown>;

/** The known key nearest to a mistyped one (edit distance at most a third of its length), if any. Pure. */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
    const distance = (a: string, b: string) => {
        const row = Array.from({ length: b.length + 1 }, (_, j) => j);
        for (let i = 1; i <= a.length; i++) {
            let prev = row[0];
            row[0] = i;
            for (let j = 1; j <= b.length; j++) {
                const here = row[j];
                row[j] = Math.min(
                    row[j] + 1,
                    row[j - 1] + 1,
                    prev + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1),
                );
                prev = here;
            }
        }
        return row[b.length];
    };
    let best: { key: string; d: number } | undefined;
    for (const k of known) {
        const d = distance(key, k);
        if (!best || d < best.d) best = { key: k, d };
    }
    return best && best.d <= Math.max(1, Math.floor(key.length / 3)) ? best.key : undefined;
}

/** A structured value arrives as an object (YAML) or as JSON text (`pulumi config set`). */
function structured(value: unknown, key: string, p: Problems): unknown {
    if (typeof value !== "string") return value;
    try {
        return JSON.parse(value);
    } catch {
        p.add(
            key,
            `is not valid JSON (${JSON.stringify(value.slice(0, 40))}); set it with --path or as JSON, e.g. pulumi config set --path 'scaledkite:${key}.<name>' <value>`,
        );
        return undefined;
    }
}

/**
 * Reads one value with a schema; each problem becomes one line `scaledkite:<key><path> <message>`.
 * `json`: the value may arrive as JSON text (see structured). Undefined when unset or invalid.
 */
function read<T>(
    schema: z.ZodType<T>,
    value: unknown,
    key: string,
    p: Problems,
    opts: { json?: boolean } = {},
): T | undefined {
    const v = opts.json ? structured(value, key, p) : value;
    if (!isSet(v)) return undefined;
    const r = schema.safeParse(v);
    if (r.success) return r.data;
    for (const issue of r.error.issues) {
        const at = key + issue.path.map((x) => (typeof x === "number" ? `[${x}]` : `.${String(x)}`)).join("");
        // Unknown fields: one problem naming them all ({keys}), or one per field, at the field.
        if (issue.code === "unrecognized_keys" && issue.message.includes("{keys}"))
            p.add(at, issue.message.replace("{keys}", issue.keys.join(", ")));
        else if (issue.code === "unrecognized_keys") for (const k of issue.keys) p.add(`${at}.${k}`, issue.message);
        else p.add(at, issue.message);
    }
    return undefined;
}

/** A check of each entry of a map or list, as zod issues at the entry's path. */
function each<T>(check: (k: string, v: T) => string | undefined) {
    return (entries: Record<string, T> | T[], ctx: z.RefinementCtx) => {
        for (const [k, v] of Object.entries(entries)) {
            const problem = check(k, v);
            if (problem) ctx.addIssue({ code: "custom", path: Array.isArray(entries) ? [] : [k], message: problem });
        }
    };
}

const got = (i: { input?: unknown }) => `got ${JSON.stringify(i.input)}`;
const STRING = z.string({ error: (i) => `must be a string, ${got(i)}` });
const SCALAR = z
    .union([z.string(), z.number(), z.boolean()], { error: (i) => `must be a string, ${got(i)}` })
    .transform(String);
const BOOLEAN = z.union([z.boolean(), z.enum(["true", "false"]).transform((v) => v === "true")], {
    error: (i) => `must be true or false, ${got(i)}`,
});
const INTEGER = (min: number, max: number) =>
    z.unknown().transform((v, ctx) => {
        const n = typeof v === "string" && /^-?\d+$/.test(v.trim()) ? Number(v) : v;
        if (typeof n === "number" && Number.isInteger(n) && n >= min && n <= max) return n;
        ctx.addIssue({
            code: "custom",
            message: `must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`,
        });
        return z.NEVER;
    });
const DIND_MODE = z.union(
    [
        z.enum(setting("dind").values as [DindMode, ...DindMode[]]),
        z.union([z.literal(true), z.literal("true")]).transform((): DindMode => "privileged"),
        z.union([z.literal(false), z.literal("false")]).transform((): DindMode => "none"),
    ],
    {
        error: (i) =>
            `must be ${setting("dind").values!.slice(0, -1).join(", ")} or ${setting("dind").values!.slice(-1)} (true and false mean privileged and none), ${got(i)}`,
    },
);
const STRING_MAP = (check: (k: string, v: string) => string | undefined = () => undefined) =>
    z
        .record(z.string(), SCALAR, { error: `must be a map of strings, e.g. {"name": "value"}` })
        .superRefine(each(check));
const AMOUNTS = STRING_MAP((_k, q) =>
    QUANTITY.test(q) ? undefined : `has ${JSON.stringify(q)}, not a Kubernetes quantity (e.g. 500m, 2, 1Gi)`,
);
const RESOURCES = z.strictObject(
    { requests: AMOUNTS.optional(), limits: AMOUNTS.optional() },
    {
        error: (i) =>
            i.code === "unrecognized_keys"
                ? `is not a resources key: use requests or limits`
                : `must be {requests: {cpu, memory}, limits: {cpu, memory}}`,
    },
);
const WORKER_RESOURCES = z.strictObject(
    { agent: RESOURCES.optional(), command: RESOURCES.optional(), dind: RESOURCES.optional() },
    {
        error: (i) =>
            i.code === "unrecognized_keys"
                ? `is not a container of the worker: use agent (buildkite-agent), command (the build) or dind`
                : `must be {agent: {requests, limits}, command: {requests, limits}, dind: {requests, limits}}`,
    },
);
const OBJECT = (name: string, allowed?: string[]) =>
    z
        .record(z.string(), z.unknown(), { error: `must be an object` })
        .superRefine(
            each((k) =>
                !allowed || allowed.includes(k) ? undefined : `is not a field of ${name}: use ${allowed.join(", ")}`,
            ),
        );
const ENV_FROM_EXAMPLE = `e.g. [{"secretRef": {"name": "npm-token"}}, {"configMapRef": {"name": "build-env"}}]`;
const REF = z.strictObject({
    name: z.string().regex(DNS1123_SUBDOMAIN, {
        error: (i) => `${JSON.stringify(i.input)} is not a Kubernetes name (lowercase letters, digits, '-', '.')`,
    }),
});
const ENV_FROM = z.array(
    z.union([z.strictObject({ secretRef: REF }), z.strictObject({ configMapRef: REF })], {
        error: `must be {"secretRef": {"name": ...}} or {"configMapRef": {"name": ...}}, ${ENV_FROM_EXAMPLE}`,
    }),
    { error: `must be a list, ${ENV_FROM_EXAMPLE}` },
);
const TOLERATIONS = z.array(
    z
        .strictObject(
            {
                key: z.string().optional(),
                operator: z.enum(["Exists", "Equal"], { error: `must be Exists or Equal` }).optional(),
                value: z.string().optional(),
                effect: z
                    .enum(["NoSchedule", "PreferNoSchedule", "NoExecute"], {
                        error: `must be NoSchedule, PreferNoSchedule or NoExecute`,
                    })
                    .optional(),
                tolerationSeconds: z.number().optional(),
            },
            {
                error: (i) =>
                    i.code === "unrecognized_keys"
                        ? `has unknown field {keys}: use key, operator, value, effect, tolerationSeconds`
                        : `must be an object with key, operator, value, effect`,
            },
        )
        .refine((t) => !(t.operator === "Exists" && t.value), {
            path: ["value"],
            message: `must be empty when operator is Exists`,
        }),
    {
        error: `must be a list of tolerations, e.g. [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}]`,
    },
);
const QUANTITY_VALUE = z
    .union([z.string(), z.number().transform(String)], { error: (i) => `must be a string, ${got(i)}` })
    .refine((q) => QUANTITY.test(q), {
        error: (i) => `${JSON.stringify(i.input)} is not a Kubernetes quantity (e.g. 32, 64Gi)`,
    });
const STRING_LIST = (check: (s: string) => string | undefined) =>
    z.array(z.string(), { error: `must be a list of strings` }).superRefine(each((_i, s: string) => check(s)));

const asString = (value: unknown, key: string, p: Problems) => read(STRING, value, key, p);
const asInteger = (value: unknown, key: string, p: Problems, min: number, max: number) =>
    read(INTEGER(min, max), value, key, p);
const asBoolean = (value: unknown, key: string, p: Problems) => read(BOOLEAN, value, key, p);
const asDindMode = (value: unknown, key: string, p: Problems) => read(DIND_MODE, value, key, p);
const asStringMap = (value: unknown, key: string, p: Problems, check?: (k: string, v: string) => string | undefined) =>
    read(STRING_MAP(check), value, key, p, { json: true });
const asWorkerResources = (value: unknown, key: string, p: Problems) =>
    read(WORKER_RESOURCES, value, key, p, { json: true }) as Partial<WorkerSettings["resources"]> | undefined;
const asObject = (value: unknown, key: string, p: Problems, allowed?: string[]) =>
    read(OBJECT(key.split(".").pop()!, allowed), value, key, p, { json: true });
const asEnvFrom = (value: unknown, key: string, p: Problems) =>
    read(ENV_FROM, value, key, p, { json: true }) as WorkerSettings["envFrom"] | undefined;
const asTolerations = (value: unknown, key: string, p: Problems) =>
    read(TOLERATIONS, value, key, p, { json: true }) as Toleration[] | undefined;
const asQuantity = (value: unknown, key: string, p: Problems) => read(QUANTITY_VALUE, value, key, p);
const asStringList = (value: unknown, key: string, p: Problems, check: (s: string) => string | undefined) =>
    read(STRING_LIST(check), value, key, p, { json: true });

/** An integer setting of `raw`, within its declared bounds; `prefix` places it (e.g. queues.big.). */
function int(raw: Raw, name: string, p: Problems, prefix = ""): number | undefined {
    const s = setting(name);
    return asInteger(raw[name], prefix + name, p, s.min!, s.max!);
}

/** A stack-wide integer setting, or its declared default. */
function intOrDefault(raw: Raw, name: string, p: Problems): number {
    return int(raw, name, p) ?? (setting(name).default as number);
}

/** A stack-wide string setting, or its declared default. */
function stringOrDefault(raw: Raw, name: string, p: Problems): string {
    return asString(raw[name], name, p) ?? (setting(name).default as string);
}

/** A stack-wide boolean setting, or its declared default. */
function boolOrDefault(raw: Raw, name: string, p: Problems): boolean {
    return asBoolean(raw[name], name, p) ?? (setting(name).default as boolean);
}

/** A setting set to something other than its declared default (Pulumi.yaml's defaults arrive as values). */
function setOtherThanDefault(raw: Raw, name: string): boolean {
    return isSet(raw[name]) && String(raw[name]) !== String(setting(name).default);
}

function checkLabel(k: string, v: string): string | undefined {
    if (!LABEL_KEY.test(k) || k.length > 316) return `is not a valid Kubernetes label key`;
    if (!LABEL_VALUE.test(v))
        return `has ${JSON.stringify(v)}, not a valid label value (63 characters of letters, digits, '-', '_', '.')`;
    return undefined;
}

function checkAnnotation(k: string): string | undefined {
    return LABEL_KEY.test(k) ? undefined : `is not a valid Kubernetes annotation key`;
}

/** The agent container's variables that Scaledkite sets itself (the admission policy pins them). */
const AGENT_OWN_ENV = [
    "BUILDKITE_AGENT_TOKEN",
    "BUILDKITE_KUBERNETES_EXEC",
    "BUILDKITE_HOOKS_PATH",
    ...AGENT_FIXED_ENV.map(([k]) => k),
    ...AGENT_DYNAMIC_ENV,
];

function checkEnvName(k: string): string | undefined {
    if (AGENT_OWN_ENV.includes(k))
        return `is set by Scaledkite for the agent (its token, hooks, job and Kubernetes mode): remove it from env`;
    return ENV_NAME.test(k) ? undefined : `is not a valid environment variable name`;
}

/** Reads the worker keys present in `raw` (stack-wide or one queue's entry) as a partial override. */
function workerOverrides(raw: Raw, prefix: string, p: Problems): Partial<WorkerSettings> {
    const k = (name: string) => prefix + name;
    const o: Partial<WorkerSettings> = {};
    const set = <K extends keyof WorkerSettings>(name: K, v: WorkerSettings[K] | undefined) => {
        if (v !== undefined) o[name] = v;
    };
    set("image", asString(raw.image, k("image"), p));
    set("dind", asDindMode(raw.dind, k("dind"), p));
    set("dindImage", asString(raw.dindImage, k("dindImage"), p));
    const resources = asWorkerResources(raw.resources, k("resources"), p);
    // Only the containers given: readQueues and the stack-wide defaults merge them per container.
    if (resources) o.resources = resources as WorkerSettings["resources"];
    set("nodeSelector", asStringMap(raw.nodeSelector, k("nodeSelector"), p, checkLabel));
    set("tolerations", asTolerations(raw.tolerations, k("tolerations"), p));
    // The whole numbers, bounded as declared (terminationGracePeriodSeconds at least 10: under that the
    // agent cannot cancel the job and upload its last logs before the kubelet's SIGKILL).
    for (const name of WORKER_KEYS.filter((key) => setting(key).type === "integer")) {
        const n = int(raw, name, p, prefix);
        if (n !== undefined) (o as Record<string, number>)[name] = n;
    }
    set(
        "agentTags",
        asStringList(raw.agentTags, k("agentTags"), p, (s) =>
            s.includes(",")
                ? `has ${JSON.stringify(s)}: a tag cannot hold a "," (the agent splits its tags on commas); list each tag on its own`
                : /^[^=\s\p{Cc}]+=[^\s\p{Cc}]+$/u.test(s) && !s.startsWith("queue=")
                  ? undefined
                  : `has ${JSON.stringify(s)}: tags are "key=value" (no spaces or control characters) and queue= is set by the scheduler`,
        ),
    );
    set("labels", asStringMap(raw.labels, k("labels"), p, checkLabel));
    set("annotations", asStringMap(raw.annotations, k("annotations"), p, checkAnnotation));
    if (prefix !== "") set("env", asStringMap(raw.env, k("env"), p, checkEnvName));
    set("envFrom", asEnvFrom(raw.envFrom, k("envFrom"), p));
    set("fargate", asBoolean(raw.fargate, k("fargate"), p));
    set("affinity", asObject(raw.affinity, k("affinity"), p, ["nodeAffinity", "podAffinity", "podAntiAffinity"]));
    set("podSpecPatch", asObject(raw.podSpecPatch, k("podSpecPatch"), p));
    for (const [rule, field] of patchViolations(o.podSpecPatch)) {
        p.add(
            k("podSpecPatch"),
            `sets ${field}, which no worker may have: ${POD_BOUNDARY[rule]} (the admission policy would refuse every worker); remove it`,
        );
    }
    const sa = asString(raw.serviceAccountName, k("serviceAccountName"), p);
    if (sa !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(sa)) {
        p.add(k("serviceAccountName"), `${JSON.stringify(sa)} is not a Kubernetes name`);
    } else set("serviceAccountName", sa);
    if (o.image !== undefined && !/^[^\s]+$/.test(o.image))
        p.add(k("image"), `must be an image reference with no spaces, e.g. ${DEFAULT_IMAGE}`);
    const agentVersion = o.image === undefined ? undefined : agentImageVersion(o.image);
    if (agentVersion && compareVersions(agentVersion, MIN_AGENT_VERSION) < 0) {
        p.add(
            k("image"),
            `${JSON.stringify(o.image)} is buildkite-agent ${agentVersion.join(".")}, older than ${MIN_AGENT_VERSION.join(".")}, which cannot read its registration token from a file (Scaledkite mounts the token as a file so that no process of the pod holds it in its environment): use ${DEFAULT_IMAGE} or newer`,
        );
    }
    return o;
}

function readQueues(
    value: unknown,
    defaults: WorkerSettings,
    stackDindImage: string | undefined,
    p: Problems,
): Record<string, WorkerSettings> {
    const v = value === undefined || value === null || value === "" ? { dynamic: {} } : structured(value, "queues", p);
    if (v === undefined) return {};
    if (typeof v !== "object" || Array.isArray(v) || v === null) {
        p.add("queues", `must be a map from queue name to settings, e.g. {"dynamic": {}}`);
        return {};
    }
    const entries = Object.entries(v as Raw);
    if (entries.length === 0)
        p.add(
            "queues",
            `serves no queue: name at least one, e.g. pulumi config set --path 'scaledkite:queues.dynamic' '{}' --json`,
        );
    const out: Record<string, WorkerSettings> = {};
    for (const [name, entry] of entries) {
        if (!QUEUE_NAME.test(name)) {
            p.add(`queues.${name}`, `is not a usable queue name (letters, digits, '-', '_', '.'; at most 100)`);
            continue;
        }
        const e = entry === null || entry === "" ? {} : entry;
        if (typeof e !== "object" || Array.isArray(e)) {
            p.add(`queues.${name}`, `must be an object of worker settings ({} inherits the defaults)`);
            continue;
        }
        const unknown = Object.keys(e as Raw).filter((k) => !(WORKER_KEYS as string[]).includes(k));
        for (const k of unknown) {
            const near = nearestKey(k, WORKER_KEYS);
            p.add(
                `queues.${name}.${k}`,
                near
                    ? `is not a queue setting: did you mean ${near}?`
                    : `is not a queue setting; queue settings are: ${WORKER_KEYS.join(", ")}`,
            );
        }
        const o = workerOverrides(e as Raw, `queues.${name}.`, p);
        const dind = o.dind ?? defaults.dind;
        // A Fargate queue takes no stack-wide nodeSelector or tolerations: Fargate picks the node.
        const merged = mergeWorker(defaults, o, (o.fargate ?? defaults.fargate) ? ["nodeSelector", "tolerations"] : []);
        // The queue's own image; else the stack's, when the queue keeps the stack's mode; else the
        // stock image of the queue's mode (a queue switched to rootless gets the rootless image).
        out[name] = {
            ...merged,
            dindImage: o.dindImage ?? (dind === defaults.dind ? stackDindImage : undefined) ?? defaultDindImage(dind),
        };
    }
    return out;
}

/**
 * Worker settings over the ones below them (the stack's over the built-in, a queue's over the
 * stack's), one rule for every key, as each key declares it (settings.json `merge`): maps merge key by
 * key (resources per container), lists add without repeats, anything else replaces. `notInherited`
 * maps and lists start empty instead of from below.
 */
export function mergeWorker(
    below: WorkerSettings,
    own: Partial<WorkerSettings>,
    notInherited: (keyof WorkerSettings)[] = [],
): WorkerSettings {
    const out: Record<string, unknown> = { ...below };
    for (const key of WORKER_KEYS as (keyof WorkerSettings)[]) {
        const base = notInherited.includes(key) ? undefined : below[key];
        const mine = own[key];
        const rule = setting(key).merge;
        if (rule === "map") out[key] = { ...((base as object) ?? {}), ...((mine as object) ?? {}) };
        else if (rule === "list") out[key] = unique([...((base as unknown[]) ?? []), ...((mine as unknown[]) ?? [])]);
        else if (mine !== undefined) out[key] = mine;
    }
    return out as unknown as WorkerSettings;
}

/** A list without repeats (by value). */
function unique<T>(items: T[]): T[] {
    const seen = new Set<string>();
    return items.filter((i) => {
        const key = JSON.stringify(i);
        if (seen.has(key)) return false;
        seen.add(key);
        return true;
    });
}

/** lambdaSubnetIds and lambdaSecurityGroupIds: both or neither. */
function readLambdaNetwork(raw: Raw, p: Problems): LambdaNetwork | undefined {
    const subnetIds =
        asStringList(raw.lambdaSubnetIds, "lambdaSubnetIds", p, (id) =>
            /^subnet-[0-9a-f]+$/.test(id) ? undefined : `has ${JSON.stringify(id)}, not a subnet id (subnet-0123abcd…)`,
        ) ?? [];
    const securityGroupIds =
        asStringList(raw.lambdaSecurityGroupIds, "lambdaSecurityGroupIds", p, (id) =>
            /^sg-[0-9a-f]+$/.test(id) ? undefined : `has ${JSON.stringify(id)}, not a security group id (sg-0123abcd…)`,
        ) ?? [];
    if (subnetIds.length === 0 && securityGroupIds.length === 0) return undefined;
    if (subnetIds.length === 0 || securityGroupIds.length === 0) {
        p.add(
            subnetIds.length === 0 ? "lambdaSubnetIds" : "lambdaSecurityGroupIds",
            `is needed too: a Lambda in a VPC needs both subnets and security groups (pulumi config set --path 'scaledkite:${subnetIds.length === 0 ? "lambdaSubnetIds[0]" : "lambdaSecurityGroupIds[0]"}' …)`,
        );
        return undefined;
    }
    return { subnetIds, securityGroupIds };
}

/**
 * Validates the raw stack configuration. `raw` maps key names (without the `scaledkite:` namespace) to
 * their values; secret keys may map to any placeholder that says they are set. The command line reads
 * stack files without their secrets, so it passes `requireSecrets: false`.
 */
export function parseStackConfig(raw: Raw, opts: { requireSecrets?: boolean } = {}): StackConfig {
    const p = new Problems();
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

    const agentToken = readAgentTokenSource(raw, opts.requireSecrets ?? true, p);

    const stackWide = workerOverrides(raw, "", p);
    const defaults = mergeWorker(WORKER_DEFAULTS, stackWide);
    const queues = readQueues(raw.queues, defaults, stackWide.dindImage, p);
    const patternLength = Object.keys(queues).length ? eventPatternLength(Object.keys(queues)) : 0;
    if (patternLength > MAX_EVENT_PATTERN_LENGTH) {
        p.add(
            "queues",
            `${Object.keys(queues).length} queues make an EventBridge rule pattern of ${patternLength} characters, over EventBridge's default quota of ${MAX_EVENT_PATTERN_LENGTH}: split the queues over two or more stacks (each with its own namespace and stackKey)`,
        );
    }
    for (const [name, q] of Object.entries(queues)) {
        if (q.dind !== "none" && !q.dindImage) p.add(`queues.${name}.dindImage`, `is empty while dind is ${q.dind}`);
        if (q.fargate && q.dind !== "none") {
            p.add(
                `queues.${name}.dind`,
                `must be none on a Fargate queue: Fargate allows no privileged containers, which docker-in-docker needs, rootless too (pulumi config set --path 'scaledkite:queues.${name}.dind' none)`,
            );
        }
        if (q.fargate && (Object.keys(q.nodeSelector).length || q.tolerations.length)) {
            p.add(
                `queues.${name}.fargate`,
                `cannot be combined with nodeSelector or tolerations: Fargate picks the node`,
            );
        }
    }
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
    const ecr = readEcr(raw, p);
    if (ecr?.identity === "podIdentity") {
        for (const name of fargateQueues) {
            p.add(
                `queues.${name}.fargate`,
                `cannot use EKS Pod Identity for ECR: Fargate pods do not get it; set scaledkite:workerIdentity irsa (the cluster needs an IAM OIDC provider)`,
            );
        }
    }
    const alarmTopicArn = asString(raw.alarmTopicArn, "alarmTopicArn", p);
    if (alarmTopicArn && !/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$/.test(alarmTopicArn)) {
        p.add(
            "alarmTopicArn",
            `${JSON.stringify(alarmTopicArn)} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>)`,
        );
    }

    const sweep = {
        intervalMinutes: intOrDefault(raw, "sweepInterval", p),
        stackKey: asString(raw.stackKey, "stackKey", p),
        endpoint: stringOrDefault(raw, "agentEndpoint", p),
        podPendingTimeoutSeconds: intOrDefault(raw, "podPendingTimeout", p),
        startFailureGraceSeconds: intOrDefault(raw, "startFailureGrace", p),
        keepQueuesConnected: boolOrDefault(raw, "keepQueuesConnected", p),
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

    if (p.list.length > 0) throw configError(p.list);
    return {
        agentToken,
        cluster: cluster!,
        eventBusName: eventBusName!,
        roleArn,
        namespace,
        jobPrefix,
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
    };
}

export const ECR_REGISTRY = /^(\d{12})\.dkr\.ecr(-fips)?\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/;
const REPOSITORY_PATTERN = /^[a-z0-9*]([a-z0-9._/*-]{0,254})$/;

/** ECR registries (a list of hosts, or of {registry, push, repositories}) and the worker identity. */
function readEcr(raw: Raw, p: Problems): StackConfig["ecr"] {
    const identityRaw = asString(raw.workerIdentity, "workerIdentity", p);
    if (identityRaw !== undefined && !setting("workerIdentity").values!.includes(identityRaw)) {
        p.add(
            "workerIdentity",
            `must be podIdentity (EKS Pod Identity, the default) or irsa (IAM roles for service accounts), got ${JSON.stringify(identityRaw)}`,
        );
    }
    const identity: WorkerIdentity = identityRaw === "irsa" ? "irsa" : "podIdentity";
    const v = structured(raw.ecrRegistries, "ecrRegistries", p);
    if (v === undefined || v === null || v === "") {
        if (setOtherThanDefault(raw, "workerIdentity"))
            p.add(
                "workerIdentity",
                `is set without scaledkite:ecrRegistries: it only applies to the workers' ECR role`,
            );
        return undefined;
    }
    const example = `e.g. ["123456789012.dkr.ecr.us-east-1.amazonaws.com", {"registry": "210987654321.dkr.ecr.eu-west-1.amazonaws.com", "push": true, "repositories": ["ci/*"]}]`;
    if (!Array.isArray(v) || v.length === 0) {
        p.add("ecrRegistries", `must be a non-empty list of registries, ${example}`);
        return undefined;
    }
    const registries: EcrRegistry[] = [];
    v.forEach((entry, i) => {
        const key = `ecrRegistries[${i}]`;
        const e = typeof entry === "string" ? { registry: entry } : entry;
        if (typeof e !== "object" || e === null || Array.isArray(e)) {
            p.add(key, `must be a registry host or {"registry": ..., "push": true|false, "repositories": [...]}`);
            return;
        }
        for (const k of Object.keys(e))
            if (!["registry", "push", "repositories"].includes(k))
                p.add(`${key}.${k}`, `is not a registry setting: use registry, push, repositories`);
        const host = asString((e as Raw).registry, `${key}.registry`, p);
        const m = host === undefined ? null : ECR_REGISTRY.exec(host);
        if (!m) {
            p.add(
                `${key}.registry`,
                `${JSON.stringify(host ?? null)} is not an ECR registry host (<account>.dkr.ecr.<region>.amazonaws.com)`,
            );
            return;
        }
        if (registries.some((r) => r.registry === host)) p.add(`${key}.registry`, `${host} is listed twice`);
        const push = asBoolean((e as Raw).push, `${key}.push`, p) ?? false;
        const repositories = asStringList((e as Raw).repositories, `${key}.repositories`, p, (r) =>
            REPOSITORY_PATTERN.test(r)
                ? undefined
                : `has ${JSON.stringify(r)}, not a repository name or pattern (e.g. ci/*)`,
        ) ?? ["*"];
        if (repositories.length === 0)
            p.add(
                `${key}.repositories`,
                `is empty: leave it out to allow every repository, or name some (e.g. ["ci/*"])`,
            );
        registries.push({
            registry: host!,
            partition: m[4] ? "aws-cn" : "aws",
            account: m[1],
            region: m[3],
            push,
            repositories,
        });
    });
    return { registries, identity };
}

/** The agent token's source: exactly one of agentToken (secret config) and agentTokenSecretArn. */
function readAgentTokenSource(raw: Raw, requireSecrets: boolean, p: Problems): AgentTokenSource {
    const arn = asString(raw.agentTokenSecretArn, "agentTokenSecretArn", p);
    const jsonKey = asString(raw.agentTokenSecretKey, "agentTokenSecretKey", p);
    const intervalMinutes = intOrDefault(raw, "tokenSyncInterval", p);
    if (arn !== undefined) {
        if (!SECRET_ARN.test(arn)) {
            p.add(
                "agentTokenSecretArn",
                `${JSON.stringify(arn)} is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>); copy it from aws secretsmanager describe-secret --secret-id <name>`,
            );
        }
        if (isSet(raw.agentToken)) {
            p.add(
                "agentToken",
                `and scaledkite:agentTokenSecretArn are both set: keep one (pulumi config rm scaledkite:agentToken to take the token from Secrets Manager)`,
            );
        }
        return { kind: "secretsManager", arn, jsonKey, intervalMinutes };
    }
    if (jsonKey !== undefined)
        p.add(
            "agentTokenSecretKey",
            `is set without scaledkite:agentTokenSecretArn: set the secret's ARN too, or remove the key`,
        );
    if (setOtherThanDefault(raw, "tokenSyncInterval"))
        p.add(
            "tokenSyncInterval",
            `is set without scaledkite:agentTokenSecretArn: it only applies to a token from Secrets Manager`,
        );
    if (requireSecrets && !isSet(raw.agentToken)) {
        p.add(
            "agentToken",
            `is required: the Buildkite agent token (pulumi config set --secret scaledkite:agentToken <token>), or its AWS Secrets Manager secret (pulumi config set scaledkite:agentTokenSecretArn <arn>)`,
        );
    }
    return { kind: "config" };
}

function isSet(v: unknown): boolean {
    return v !== undefined && v !== null && v !== "";
}

/** The part of the stack configuration the scheduler needs at run time (no secrets). */
export function schedulerSettings(config: StackConfig): SchedulerSettings {
    return { namespace: config.namespace, jobPrefix: config.jobPrefix, queues: config.queues, secrets: config.secrets };
}
