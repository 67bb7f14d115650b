/**
 * What a job's step asks of its pod, read from the job's environment (the Stacks API's
 * `GET /stacks/:key/jobs/:uuid` answers `{id, env, command}`), with the meaning agent-stack-k8s gives
 * it (read at v0.47, commit a5d56d1: internal/controller/scheduler/build_inputs.go):
 *   - `BUILDKITE_IMAGE`: the step's `image:` (or the pipeline's), the command container's image;
 *   - `BUILDKITE_PLUGINS`: a JSON array of one-key objects, the key the plugin's resolved source; the
 *     `kubernetes` plugin's config says the rest (KubernetesPlugin);
 *   - the agent tag `resource_class=<name>`: a size from the stack's resourceClasses.
 * Every problem is a value naming the step's field and the fix, never a throw. Pure.
 */
import type { V1Container, V1EnvFromSource, V1PodSpec, V1VolumeMount } from "@kubernetes/client-node";
import type { StepShapeMode } from "./settings";

/** The `kubernetes` plugin's source once Buildkite has resolved the step's `kubernetes:` shorthand. */
export const KUBERNETES_PLUGIN = "github.com/buildkite-plugins/kubernetes-buildkite-plugin";

/** A JSON object. */
export type Obj = Record<string, unknown>;

/** The `kubernetes` plugin's config, each field checked for its type (agent-stack-k8s's meaning). */
export interface KubernetesPlugin {
    podSpec?: Partial<V1PodSpec>;
    podSpecPatch?: Obj;
    podTemplate?: string;
    sidecars?: V1Container[];
    metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
    extraVolumeMounts?: V1VolumeMount[];
    gitEnvFrom?: V1EnvFromSource[];
    checkout?: Checkout;
    commandParams?: { interposer?: Interposer; envFrom?: V1EnvFromSource[]; extraVolumeMounts?: V1VolumeMount[] };
    sidecarParams?: { envFrom?: V1EnvFromSource[]; extraVolumeMounts?: V1VolumeMount[] };
    jobActiveDeadlineSeconds?: number;
}

/** How a podSpec container's `command` and `args` become the step's command. */
export type Interposer = "buildkite" | "vector" | "legacy";

export interface Checkout {
    skip?: boolean;
    cloneFlags?: string;
    fetchFlags?: string;
    checkoutFlags?: string;
    cleanFlags?: string;
    noSubmodules?: boolean;
    submoduleCloneConfig?: string[];
    gitMirrors?: Obj;
    gitCredentialsSecret?: Obj;
    envFrom?: V1EnvFromSource[];
}

/** What one job's step asks of its pod. */
export interface StepShape {
    /** The step's `image:`. */
    image?: string;
    plugin?: KubernetesPlugin;
    /** The `resource_class` agent tag. */
    resourceClass?: string;
    /** The job's command. */
    command: string;
    /** Fields of the plugin this version does not know (ignored; Buildkite is told on the job's timeline). */
    unknownFields: string[];
}

/** A step that cannot be run as it asks: the field, and what is wrong with it and how to fix it. */
export interface StepProblem {
    field: string;
    problem: string;
}

export type StepResult = { shape: StepShape } | { refused: StepProblem };

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const kind = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "a list" : typeof v);

/**
 * Whether a plugin source is the `kubernetes` plugin: exactly its resolved source, the one entry the
 * agent drops under --kubernetes-exec (buildkite/agent v3.138.3 agent/job_runner.go,
 * removeKubernetesPlugin) and the one agent-stack-k8s reads. Any other spelling (a `#ref`, a URL)
 * would be cloned and run as an ordinary plugin by the agent, so it is not taken as this one either.
 */
export function isKubernetesPlugin(source: string): boolean {
    return source === KUBERNETES_PLUGIN;
}

/**
 * A Docker image reference as the distribution reference grammar takes it (what the kubelet and
 * agent-stack-k8s parse): [host[:port]/]path[:tag][@digest], lowercase path components. Pure.
 */
export function imageProblem(ref: string): string | undefined {
    if (ref.length === 0) return "is empty";
    if (ref.length > 4096) return "is longer than 4096 characters";
    const component = "[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
    const host =
        "(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\\[[0-9a-fA-F:]+\\])(?::[0-9]+)?";
    const grammar = new RegExp(
        `^(?:${host}/)?${component}(?:/${component})*(?::[\\w][\\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`,
    );
    if (grammar.test(ref)) return undefined;
    if (/[A-Z]/.test(ref.split(/[:@]/)[0].split("/").slice(-1)[0]))
        return "has upper-case letters in its repository name";
    return "is not a valid image reference (invalid reference format; expected [registry/]name[:tag][@digest])";
}

const TOP_FIELDS: Record<keyof KubernetesPlugin, (v: unknown) => string | undefined> = {
    podSpec: (v) => (isObj(v) ? undefined : `must be a pod spec (an object), got ${kind(v)}`),
    podSpecPatch: (v) => (isObj(v) ? undefined : `must be a pod spec patch (an object), got ${kind(v)}`),
    podTemplate: (v) =>
        typeof v === "string" && v !== "" ? undefined : `must be a PodTemplate's name, got ${kind(v)}`,
    sidecars: (v) => list(v, "containers"),
    metadata: (v) =>
        !isObj(v)
            ? `must be {labels, annotations}, got ${kind(v)}`
            : (stringMap(v.labels, "labels") ?? stringMap(v.annotations, "annotations")),
    extraVolumeMounts: (v) => list(v, "volume mounts"),
    gitEnvFrom: (v) => list(v, "envFrom sources"),
    checkout: (v) => (isObj(v) ? checkoutProblem(v) : `must be an object, got ${kind(v)}`),
    commandParams: (v) =>
        !isObj(v)
            ? `must be {interposer, envFrom, extraVolumeMounts}, got ${kind(v)}`
            : v.interposer !== undefined && !["buildkite", "vector", "legacy"].includes(v.interposer as string)
              ? `.interposer must be buildkite, vector or legacy, got ${JSON.stringify(v.interposer)}`
              : (optList(v.envFrom, ".envFrom", "envFrom sources") ??
                optList(v.extraVolumeMounts, ".extraVolumeMounts", "volume mounts")),
    sidecarParams: (v) =>
        !isObj(v)
            ? `must be {envFrom, extraVolumeMounts}, got ${kind(v)}`
            : (optList(v.envFrom, ".envFrom", "envFrom sources") ??
              optList(v.extraVolumeMounts, ".extraVolumeMounts", "volume mounts")),
    jobActiveDeadlineSeconds: (v) =>
        typeof v === "number" && Number.isInteger(v) && v > 0
            ? undefined
            : `must be a whole number of seconds, got ${JSON.stringify(v)}`,
};

function list(v: unknown, what: string): string | undefined {
    return Array.isArray(v) && v.every(isObj) ? undefined : `must be a list of ${what} (objects), got ${kind(v)}`;
}
function optList(v: unknown, sub: string, what: string): string | undefined {
    if (v === undefined) return undefined;
    const p = list(v, what);
    return p && `${sub} ${p}`;
}
function stringMap(v: unknown, name: string): string | undefined {
    if (v === undefined) return undefined;
    return isObj(v) && Object.values(v).every((x) => typeof x === "string")
        ? undefined
        : `.${name} must be a map of strings, got ${kind(v)}`;
}

const CHECKOUT_FIELDS: Record<keyof Checkout, "boolean" | "string" | "strings" | "object" | "objects"> = {
    skip: "boolean",
    cloneFlags: "string",
    fetchFlags: "string",
    checkoutFlags: "string",
    cleanFlags: "string",
    noSubmodules: "boolean",
    submoduleCloneConfig: "strings",
    gitMirrors: "object",
    gitCredentialsSecret: "object",
    envFrom: "objects",
};

function checkoutProblem(v: Obj): string | undefined {
    for (const [k, want] of Object.entries(CHECKOUT_FIELDS)) {
        const x = v[k];
        if (x === undefined) continue;
        const ok =
            want === "strings"
                ? Array.isArray(x) && x.every((s) => typeof s === "string")
                : want === "objects"
                  ? Array.isArray(x) && x.every(isObj)
                  : want === "object"
                    ? isObj(x)
                    : typeof x === want;
        if (!ok)
            return `.${k} must be ${want === "strings" ? "a list of strings" : want === "objects" ? "a list of objects" : `a ${want}`}, got ${kind(x)}`;
    }
    return undefined;
}

/** The unknown keys of the plugin and of its checkout, named as the step writes them. */
function unknownFields(config: Obj): string[] {
    const out = Object.keys(config).filter((k) => !(k in TOP_FIELDS));
    if (isObj(config.checkout))
        out.push(
            ...Object.keys(config.checkout)
                .filter((k) => !(k in CHECKOUT_FIELDS))
                .map((k) => `checkout.${k}`),
        );
    return out;
}

const PLUGIN_FIELD = "plugins.kubernetes";

/**
 * Reads what a job's step asks of its pod, as far as `mode` lets it: `image` reads only the step's
 * image; `plugin` also the `kubernetes` plugin and the `resource_class` tag. Pure.
 */
export function readStep(
    input: { env: Record<string, string>; command: string },
    mode: StepShapeMode,
    tags: readonly string[],
): StepResult {
    const shape: StepShape = { command: input.command, unknownFields: [] };
    if (mode === "none") return { shape };
    const env = input.env;
    const image = Object.prototype.hasOwnProperty.call(env, "BUILDKITE_IMAGE") ? env.BUILDKITE_IMAGE.trim() : "";
    if (image) {
        const problem = imageProblem(image);
        if (problem) return { refused: { field: "image", problem: `${JSON.stringify(image)} ${problem}` } };
        shape.image = image;
    }
    if (mode !== "plugin") return { shape };

    const resourceClass = tags.find((t) => t.startsWith("resource_class="))?.slice("resource_class=".length);
    if (resourceClass !== undefined) shape.resourceClass = resourceClass;

    const raw = Object.prototype.hasOwnProperty.call(env, "BUILDKITE_PLUGINS") ? env.BUILDKITE_PLUGINS : "";
    if (!raw.trim()) return { shape };
    let plugins: unknown;
    try {
        plugins = JSON.parse(raw);
    } catch {
        return {
            refused: { field: "plugins", problem: "BUILDKITE_PLUGINS is not JSON: the job's plugins cannot be read" },
        };
    }
    if (plugins === null) return { shape };
    if (!Array.isArray(plugins))
        return { refused: { field: "plugins", problem: `BUILDKITE_PLUGINS must be a list, got ${kind(plugins)}` } };
    const found: Obj[] = [];
    for (const [i, entry] of plugins.entries()) {
        if (!isObj(entry) || Object.keys(entry).length !== 1)
            return {
                refused: {
                    field: `plugins[${i}]`,
                    problem: "must be one plugin name with its config (e.g. `- kubernetes: {...}`)",
                },
            };
        const [source, config] = Object.entries(entry)[0];
        if (!isKubernetesPlugin(source)) continue;
        if (config === null || config === undefined) {
            found.push({});
            continue;
        }
        if (!isObj(config))
            return { refused: { field: PLUGIN_FIELD, problem: `must be an object of settings, got ${kind(config)}` } };
        found.push(config);
    }
    if (found.length > 1)
        return {
            refused: { field: PLUGIN_FIELD, problem: "is given more than once: merge its settings into one entry" },
        };
    if (found.length === 0) return { shape };
    const config = found[0];
    for (const [k, check] of Object.entries(TOP_FIELDS)) {
        if (config[k] === undefined) continue;
        const problem = check(config[k]);
        if (!problem) continue;
        // "…: .sub must be …" names the sub-field in the field.
        const sub = /^\.(\w+) (.*)$/.exec(problem);
        return {
            refused: sub
                ? { field: `${PLUGIN_FIELD}.${k}.${sub[1]}`, problem: sub[2] }
                : { field: `${PLUGIN_FIELD}.${k}`, problem },
        };
    }
    shape.plugin = config as KubernetesPlugin;
    shape.unknownFields = unknownFields(config);
    return { shape };
}
