/** The worker settings: built-in defaults, one entry's overrides, the queues, and the one merge rule. Pure. */
import { agentImageVersion, compareVersions, MIN_AGENT_VERSION } from "../core/agentLauncher";
import { patchViolations, POD_BOUNDARY } from "../core/podBoundary";
import type { DindMode, WorkerSettings } from "../core/settings";
import { eventPatternLength, MAX_EVENT_PATTERN_LENGTH } from "../core/queue";
import { DEFAULT_DIND_IMAGE, DEFAULT_DIND_ROOTLESS_IMAGE, DEFAULT_IMAGE, setting, WORKER_KEYS } from "./declaration";
import {
    asBoolean,
    asDindMode,
    asEnvFrom,
    asObject,
    asString,
    asStringList,
    asStepShape,
    asStringMap,
    asTolerations,
    asWorkerResources,
    checkAnnotation,
    checkEnvName,
    checkLabel,
    int,
    nearestKey,
    type Problems,
    QUEUE_NAME,
    type Raw,
    structured,
} from "./readers";

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
    // Resolved per stack by readWorkers: `plugin` where the stack can read jobs (it has a stackKey).
    stepShape: "none",
    allowedImages: [],
};

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
    set("stepShape", asStepShape(raw.stepShape, k("stepShape"), p));
    set(
        "allowedImages",
        asStringList(raw.allowedImages, k("allowedImages"), p, (s) =>
            /^[^\s\p{Cc}]+$/u.test(s) ? undefined : `has ${JSON.stringify(s)}: an image prefix has no spaces`,
        ),
    );
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

/** The stack-wide worker settings over the built-in ones, and every queue's over those, with the checks that cross keys. */
export function readWorkers(
    raw: Raw,
    p: Problems,
    canReadJobs = false,
): { defaults: WorkerSettings; queues: Record<string, WorkerSettings> } {
    const stackWide = workerOverrides(raw, "", p);
    const defaults = mergeWorker({ ...WORKER_DEFAULTS, stepShape: canReadJobs ? "plugin" : "none" }, stackWide);
    const queues = readQueues(raw.queues, defaults, stackWide.dindImage, p);
    for (const [name, q] of Object.entries(queues)) {
        if (q.stepShape !== "none" && !canReadJobs)
            p.add(
                `${Object.prototype.hasOwnProperty.call(stackWide, "stepShape") ? "" : `queues.${name}.`}stepShape`,
                `${q.stepShape} reads each job through Buildkite's Stacks API, which needs a stack key: turn the sweep on (scaledkite:sweepInterval) or set scaledkite:stackKey`,
            );
    }
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
    return { defaults, queues };
}
