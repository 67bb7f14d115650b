/**
 * Every setting of the stack (`pulumi config set scaledkite:<key>`), declared once in settings.json
 * (data, typed by `Setting` below): its name, type, default, bounds or allowed values, where it may be
 * set, how a queue's value meets the stack's, an example that works, and what it does. The parser (config.ts) reads bounds, defaults and allowed
 * values from here and says them in its messages; the README's configuration table and the typed
 * `config:` block of Pulumi.yaml are rendered from here (`npm run docs` writes both), and a test fails
 * when either differs. Pure, deploy-time only.
 */
import settingsJson from "./settings.json";

/** The stock dind images (the README's default of `dindImage` names them; a test checks it). */
export const DEFAULT_DIND_IMAGE = "docker:28.5.2-dind";
/** The stock rootless variant at the same version: dockerd as uid 1000 inside rootlesskit. */
export const DEFAULT_DIND_ROOTLESS_IMAGE = "docker:28.5.2-dind-rootless";

/** One setting. */
export interface Setting {
    key: string;
    /** How the value is read: "json" is a map or list, as YAML or as JSON text. */
    type: "string" | "integer" | "boolean" | "json";
    /** "stack": stack-wide only; "worker": stack-wide and per queue (in `queues.<name>`). */
    scope: "stack" | "worker";
    required?: true;
    /** Only its presence is read by the parser; `pulumi config set --secret`. */
    secret?: true;
    /** The value when the key is absent, where it is one plain value. */
    default?: string | number | boolean;
    /** How the default reads in the README when it is not one plain value. */
    defaultText?: string;
    /** Bounds of an integer. */
    min?: number;
    max?: number;
    /** The values a string may take. */
    values?: readonly string[];
    /** Worker keys: how a queue's value meets the stack-wide one. */
    merge?: "map" | "list" | "replace";
    /** A value that works, as `pulumi config set` takes it (JSON for maps and lists). */
    example: string;
    /** How the README shows the example, where the command line says it better than the value. */
    exampleText?: string;
    /** What the example needs beside it to make a valid stack. */
    exampleWith?: Record<string, unknown>;
    description: string;
}

/** The settings, in the README's order: data in settings.json, typed and checked here and in test/config/declaration.test.ts. */
export const SETTINGS: readonly Setting[] = settingsJson as unknown as Setting[];

const BY_KEY = new Map(SETTINGS.map((s) => [s.key, s]));

/** The declaration of a key; throws for a key that is not declared (a programming error). */
export function setting(key: string): Setting {
    const s = BY_KEY.get(key);
    if (!s) throw new Error(`scaledkite: no setting ${key} is declared`);
    return s;
}

/** The agent's image by default. */
export const DEFAULT_IMAGE = setting("image").default as string;

/** Every key a stack may set (the stack-wide `env` is a secret map, the per-queue one plain). */
export const CONFIG_KEYS: readonly string[] = SETTINGS.map((s) => s.key);
/** Keys that hold secrets: only their presence is read by the parser. */
export const SECRET_KEYS: readonly string[] = SETTINGS.filter((s) => s.secret).map((s) => s.key);
/** Keys a queue's entry may set. */
export const WORKER_KEYS: readonly string[] = [
    ...SETTINGS.filter((s) => s.scope === "worker" && !s.secret),
    ...SETTINGS.filter((s) => s.scope === "worker" && s.secret),
].map((s) => s.key);

/** How the default reads in the README. */
function defaultCell(s: Setting): string {
    const text = s.required ? "required" : (s.defaultText ?? (s.default === undefined ? "none" : `\`${s.default}\``));
    return s.secret ? `${text}, secret` : text;
}

/** How a queue's value meets the stack's, as the README says it. */
const MERGE_RULES: Record<NonNullable<Setting["merge"]>, string> = {
    map: "merges with the stack's, key by key.",
    list: "adds to the stack's.",
    replace: "replaces the stack's.",
};

/** The README's configuration table, one row per setting. Pure. */
export function renderReadmeTable(): string {
    const cell = (t: string) => t.replace(/\|/g, "\\|");
    const rows = SETTINGS.map((s) => {
        const example = `\`${s.exampleText ?? (s.secret ? `--secret '${s.example}'` : s.example)}\``;
        const perQueue = s.merge ? ` Per queue: ${MERGE_RULES[s.merge]}` : "";
        return `| \`${s.key}\` | ${cell(defaultCell(s))} | ${cell(example)} | ${cell(s.description + perQueue)} |`;
    });
    return ["| key | default | example | what it does |", "|---|---|---|---|", ...rows].join("\n");
}

/**
 * Pulumi.yaml's `config:` block: Pulumi's own declarations (type, description, default, secret), so
 * `pulumi config` and `pulumi preview` know the types. Pulumi takes a declared key without a default
 * as required, and types only strings, integers, booleans and arrays: so a key is declared there when
 * it is required or has one plain default; the others (maps and lists, optional keys without a
 * default) are the parser's alone. Pure.
 */
export function renderPulumiConfig(): Record<string, Record<string, unknown>> {
    const out: Record<string, Record<string, unknown>> = {};
    for (const s of SETTINGS) {
        if (s.type === "json" || (!s.required && s.default === undefined)) continue;
        const description = s.description.replace(/\s*\(see [^)]*\)/g, "");
        out[`scaledkite:${s.key}`] = {
            type: s.type,
            description,
            ...(s.default === undefined ? {} : { default: s.default }),
            ...(s.secret ? { secret: true } : {}),
        };
    }
    return out;
}
