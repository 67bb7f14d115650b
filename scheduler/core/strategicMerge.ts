/**
 * A strategic-merge patch for pod specs, as `kubectl patch --type strategic` applies one: maps merge
 * key by key, `null` deletes a key, and the lists Kubernetes merges by a key (containers by name,
 * volumes by name, env by name, volume mounts by mount path, ...) merge item by item; every other list
 * is replaced. Pure.
 */

/** List fields of a pod spec (at any depth) and the key their items merge on. */
const MERGE_KEYS: Record<string, string> = {
    containers: "name",
    initContainers: "name",
    ephemeralContainers: "name",
    volumes: "name",
    env: "name",
    volumeMounts: "mountPath",
    volumeDevices: "devicePath",
    ports: "containerPort",
    imagePullSecrets: "name",
    hostAliases: "ip",
    resourceClaims: "name",
    readinessGates: "conditionType",
    topologySpreadConstraints: "topologyKey",
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

function mergeList(base: unknown[], patch: unknown[], key: string): unknown[] {
    const out = [...base];
    for (const item of patch) {
        if (!isPlainObject(item) || item[key] === undefined) {
            out.push(item);
            continue;
        }
        const i = out.findIndex((b) => isPlainObject(b) && b[key] === item[key]);
        if (item.$patch === "delete") {
            if (i >= 0) out.splice(i, 1);
        } else if (i >= 0) {
            out[i] = strategicMerge(out[i] as Record<string, unknown>, item);
        } else {
            out.push(strategicMerge({}, item));
        }
    }
    return out;
}

/** Applies `patch` to `base` (neither is changed) and returns the result. */
export function strategicMerge<T extends Record<string, unknown>>(base: T, patch: Record<string, unknown>): T {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(patch)) {
        if (k === "$patch") continue;
        if (v === null) {
            delete out[k];
        } else if (Array.isArray(v) && MERGE_KEYS[k] && Array.isArray(out[k])) {
            out[k] = mergeList(out[k] as unknown[], v, MERGE_KEYS[k]);
        } else if (isPlainObject(v) && isPlainObject(out[k])) {
            out[k] = strategicMerge(out[k] as Record<string, unknown>, v);
        } else {
            out[k] = Array.isArray(v) && MERGE_KEYS[k] ? mergeList([], v, MERGE_KEYS[k]) : v;
        }
    }
    return out as T;
}
