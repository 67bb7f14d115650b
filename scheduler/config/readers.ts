/**
 * The value readers of the stack configuration: problems collected one line each, the shapes of
 * values as zod schemas whose messages are the parser's own (`read()` turns each issue into
 * `scaledkite:<key><path> <message>`), and the declared defaults and bounds. Pure.
 */
import { z } from "zod";
import type { DindMode, StepShapeMode, Toleration, WorkerSettings } from "../core/settings";
import { setting } from "./declaration";
import { AGENT_DYNAMIC_ENV, AGENT_FIXED_ENV } from "../core/workerEnv";

export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const QUANTITY = /^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E|[eE][+-]?[0-9]+)?$/;
export const LABEL_KEY =
    /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
export const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;
export const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
export const QUEUE_NAME = /^[A-Za-z0-9][-A-Za-z0-9_.]{0,99}$/;

/** Collects problems; every message is one line naming the key and what to do. */
export class Problems {
    readonly list: string[] = [];
    add(key: string, message: string): void {
        this.list.push(`scaledkite:${key} ${message}`);
    }
}

export type Raw = Record<string, unknown>;

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
export function structured(value: unknown, key: string, p: Problems): unknown {
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
export function read<T>(
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
export function each<T>(check: (k: string, v: T) => string | undefined) {
    return (entries: Record<string, T> | T[], ctx: z.RefinementCtx) => {
        for (const [k, v] of Object.entries(entries)) {
            const problem = check(k, v);
            if (problem) ctx.addIssue({ code: "custom", path: Array.isArray(entries) ? [] : [k], message: problem });
        }
    };
}

export const got = (i: { input?: unknown }) => `got ${JSON.stringify(i.input)}`;
export const STRING = z.string({ error: (i) => `must be a string, ${got(i)}` });
export const SCALAR = z
    .union([z.string(), z.number(), z.boolean()], { error: (i) => `must be a string, ${got(i)}` })
    .transform(String);
export const BOOLEAN = z.union([z.boolean(), z.enum(["true", "false"]).transform((v) => v === "true")], {
    error: (i) => `must be true or false, ${got(i)}`,
});
export const INTEGER = (min: number, max: number) =>
    z.unknown().transform((v, ctx) => {
        const n = typeof v === "string" && /^-?\d+$/.test(v.trim()) ? Number(v) : v;
        if (typeof n === "number" && Number.isInteger(n) && n >= min && n <= max) return n;
        ctx.addIssue({
            code: "custom",
            message: `must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`,
        });
        return z.NEVER;
    });
export const DIND_MODE = z.union(
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
export const STEP_SHAPE = z.enum(setting("stepShape").values as [StepShapeMode, ...StepShapeMode[]], {
    error: (i) => `must be ${setting("stepShape").values!.join(", ")}, ${got(i)}`,
});
export const STRING_MAP = (check: (k: string, v: string) => string | undefined = () => undefined) =>
    z
        .record(z.string(), SCALAR, { error: `must be a map of strings, e.g. {"name": "value"}` })
        .superRefine(each(check));
export const AMOUNTS = STRING_MAP((_k, q) =>
    QUANTITY.test(q) ? undefined : `has ${JSON.stringify(q)}, not a Kubernetes quantity (e.g. 500m, 2, 1Gi)`,
);
export const RESOURCES = z.strictObject(
    { requests: AMOUNTS.optional(), limits: AMOUNTS.optional() },
    {
        error: (i) =>
            i.code === "unrecognized_keys"
                ? `is not a resources key: use requests or limits`
                : `must be {requests: {cpu, memory}, limits: {cpu, memory}}`,
    },
);
export const WORKER_RESOURCES = z.strictObject(
    { agent: RESOURCES.optional(), command: RESOURCES.optional(), dind: RESOURCES.optional() },
    {
        error: (i) =>
            i.code === "unrecognized_keys"
                ? `is not a container of the worker: use agent (buildkite-agent), command (the build) or dind`
                : `must be {agent: {requests, limits}, command: {requests, limits}, dind: {requests, limits}}`,
    },
);
export const OBJECT = (name: string, allowed?: string[]) =>
    z
        .record(z.string(), z.unknown(), { error: `must be an object` })
        .superRefine(
            each((k) =>
                !allowed || allowed.includes(k) ? undefined : `is not a field of ${name}: use ${allowed.join(", ")}`,
            ),
        );
export const ENV_FROM_EXAMPLE = `e.g. [{"secretRef": {"name": "npm-token"}}, {"configMapRef": {"name": "build-env"}}]`;
export const REF = z.strictObject({
    name: z.string().regex(DNS1123_SUBDOMAIN, {
        error: (i) => `${JSON.stringify(i.input)} is not a Kubernetes name (lowercase letters, digits, '-', '.')`,
    }),
});
export const ENV_FROM = z.array(
    z.union([z.strictObject({ secretRef: REF }), z.strictObject({ configMapRef: REF })], {
        error: `must be {"secretRef": {"name": ...}} or {"configMapRef": {"name": ...}}, ${ENV_FROM_EXAMPLE}`,
    }),
    { error: `must be a list, ${ENV_FROM_EXAMPLE}` },
);
export const TOLERATIONS = z.array(
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
export const QUANTITY_VALUE = z
    .union([z.string(), z.number().transform(String)], { error: (i) => `must be a string, ${got(i)}` })
    .refine((q) => QUANTITY.test(q), {
        error: (i) => `${JSON.stringify(i.input)} is not a Kubernetes quantity (e.g. 32, 64Gi)`,
    });
export const STRING_LIST = (check: (s: string) => string | undefined) =>
    z.array(z.string(), { error: `must be a list of strings` }).superRefine(each((_i, s: string) => check(s)));

export const asString = (value: unknown, key: string, p: Problems) => read(STRING, value, key, p);
export const asInteger = (value: unknown, key: string, p: Problems, min: number, max: number) =>
    read(INTEGER(min, max), value, key, p);
export const asBoolean = (value: unknown, key: string, p: Problems) => read(BOOLEAN, value, key, p);
export const asStepShape = (value: unknown, key: string, p: Problems) => read(STEP_SHAPE, value, key, p);
export const asDindMode = (value: unknown, key: string, p: Problems) => read(DIND_MODE, value, key, p);
export const asStringMap = (
    value: unknown,
    key: string,
    p: Problems,
    check?: (k: string, v: string) => string | undefined,
) => read(STRING_MAP(check), value, key, p, { json: true });
export const asWorkerResources = (value: unknown, key: string, p: Problems) =>
    read(WORKER_RESOURCES, value, key, p, { json: true }) as Partial<WorkerSettings["resources"]> | undefined;
export const asObject = (value: unknown, key: string, p: Problems, allowed?: string[]) =>
    read(OBJECT(key.split(".").pop()!, allowed), value, key, p, { json: true });
export const asEnvFrom = (value: unknown, key: string, p: Problems) =>
    read(ENV_FROM, value, key, p, { json: true }) as WorkerSettings["envFrom"] | undefined;
export const asTolerations = (value: unknown, key: string, p: Problems) =>
    read(TOLERATIONS, value, key, p, { json: true }) as Toleration[] | undefined;
export const asQuantity = (value: unknown, key: string, p: Problems) => read(QUANTITY_VALUE, value, key, p);
export const asStringList = (value: unknown, key: string, p: Problems, check: (s: string) => string | undefined) =>
    read(STRING_LIST(check), value, key, p, { json: true });

/** An integer setting of `raw`, within its declared bounds; `prefix` places it (e.g. queues.big.). */
export function int(raw: Raw, name: string, p: Problems, prefix = ""): number | undefined {
    const s = setting(name);
    return asInteger(raw[name], prefix + name, p, s.min!, s.max!);
}

/** A stack-wide integer setting, or its declared default. */
export function intOrDefault(raw: Raw, name: string, p: Problems): number {
    return int(raw, name, p) ?? (setting(name).default as number);
}

/** A stack-wide string setting, or its declared default. */
export function stringOrDefault(raw: Raw, name: string, p: Problems): string {
    return asString(raw[name], name, p) ?? (setting(name).default as string);
}

/** A stack-wide boolean setting, or its declared default. */
export function boolOrDefault(raw: Raw, name: string, p: Problems): boolean {
    return asBoolean(raw[name], name, p) ?? (setting(name).default as boolean);
}

/** A setting set to something other than its declared default (Pulumi.yaml's defaults arrive as values). */
export function setOtherThanDefault(raw: Raw, name: string): boolean {
    return isSet(raw[name]) && String(raw[name]) !== String(setting(name).default);
}

export function checkLabel(k: string, v: string): string | undefined {
    if (!LABEL_KEY.test(k) || k.length > 316) return `is not a valid Kubernetes label key`;
    if (!LABEL_VALUE.test(v))
        return `has ${JSON.stringify(v)}, not a valid label value (63 characters of letters, digits, '-', '_', '.')`;
    return undefined;
}

export function checkAnnotation(k: string): string | undefined {
    return LABEL_KEY.test(k) ? undefined : `is not a valid Kubernetes annotation key`;
}

/** The agent container's variables that Scaledkite sets itself (the admission policy pins them). */
export const AGENT_OWN_ENV = [
    "BUILDKITE_AGENT_TOKEN",
    "BUILDKITE_KUBERNETES_EXEC",
    "BUILDKITE_HOOKS_PATH",
    ...AGENT_FIXED_ENV.map(([k]) => k),
    ...AGENT_DYNAMIC_ENV,
];

export function checkEnvName(k: string): string | undefined {
    if (AGENT_OWN_ENV.includes(k))
        return `is set by Scaledkite for the agent (its token, hooks, job and Kubernetes mode): remove it from env`;
    return ENV_NAME.test(k) ? undefined : `is not a valid environment variable name`;
}

export function isSet(v: unknown): boolean {
    return v !== undefined && v !== null && v !== "";
}
