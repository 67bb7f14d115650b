import { SECRET_NAMES } from "./names";
/**
 * What no worker pod may have, whoever asks for it. Pure.
 *
 * Two places hold the same line: the admission policy (k8s/workerPolicy.ts) makes the API server
 * refuse a Job that crosses it when a Lambda identity creates it (so a leaked credential cannot), and
 * the config parser refuses a stack whose own `podSpecPatch` crosses it at `pulumi preview` (so a
 * stack never deploys workers the policy would refuse). Each rule has one id and one message, used by both.
 */

/** The rules of the boundary: id -> what is refused and why (the message's tail). */
export const POD_BOUNDARY = {
    hostNamespaces: "host namespaces (hostNetwork, hostPID, hostIPC) are not allowed",
    hostPath: "hostPath volumes are not allowed",
    nodeName: "nodeName is not allowed: the scheduler places workers (a chosen node is a way onto it)",
    shareProcessNamespace:
        "shareProcessNamespace is not allowed: it shows the agent's processes, and so its token, to the build",
    privileged: "only the dind sidecar, with the stack's dind image and dockerd's arguments, may be privileged",
    capabilities: "added capabilities are not allowed",
    unconfined: "seccomp and AppArmor profiles may not be Unconfined",
    hostPorts: "host ports are not allowed",
    agentToken: `the agent token Secret (${SECRET_NAMES.agentToken}) may only be mounted in the agent container, as Scaledkite mounts it`,
    agentContainer:
        "the agent container is Scaledkite's: its image, command, arguments, token and hooks are as Scaledkite renders them",
} as const;

export type BoundaryRule = keyof typeof POD_BOUNDARY;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const list = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObj) : []);

/** The container fields of the agent container that a patch may not set. */
const AGENT_FIELDS_KEPT = ["image", "command", "args", "env", "envFrom", "volumeMounts", "securityContext"];

/**
 * The rules a pod spec patch (the stack's or a queue's `podSpecPatch`) breaks, each with the field
 * that breaks it, e.g. `["shareProcessNamespace", "shareProcessNamespace: true"]`. Pure.
 */
export function patchViolations(patch: Obj | undefined): [BoundaryRule, string][] {
    if (!patch) return [];
    const out: [BoundaryRule, string][] = [];
    for (const f of ["hostNetwork", "hostPID", "hostIPC"])
        if (patch[f] === true) out.push(["hostNamespaces", `${f}: true`]);
    if (patch.shareProcessNamespace === true) out.push(["shareProcessNamespace", "shareProcessNamespace: true"]);
    if (patch.nodeName !== undefined) out.push(["nodeName", "nodeName"]);
    if (unconfined(patch.securityContext)) out.push(["unconfined", "securityContext"]);
    for (const v of list(patch.volumes)) {
        if (v.hostPath !== undefined) out.push(["hostPath", `volumes[${v.name}].hostPath`]);
        if (mentionsToken(v)) out.push(["agentToken", `volumes[${v.name}]`]);
    }
    for (const key of ["containers", "initContainers"]) {
        for (const c of list(patch[key])) {
            const where = `${key}[${c.name}]`;
            const sc = isObj(c.securityContext) ? c.securityContext : {};
            if (sc.privileged === true) out.push(["privileged", `${where}.securityContext.privileged`]);
            if (isObj(sc.capabilities) && Array.isArray(sc.capabilities.add) && sc.capabilities.add.length)
                out.push(["capabilities", `${where}.securityContext.capabilities.add`]);
            if (unconfined(sc)) out.push(["unconfined", `${where}.securityContext`]);
            if (list(c.ports).some((p) => p.hostPort !== undefined)) out.push(["hostPorts", `${where}.ports`]);
            if (mentionsToken({ env: c.env, envFrom: c.envFrom })) out.push(["agentToken", `${where}.env`]);
            if (c.name === "agent")
                for (const f of AGENT_FIELDS_KEPT)
                    if (c[f] !== undefined) out.push(["agentContainer", `${where}.${f}`]);
        }
    }
    return out;
}

function unconfined(sc: unknown): boolean {
    if (!isObj(sc)) return false;
    return [sc.seccompProfile, sc.appArmorProfile].some((p) => isObj(p) && p.type === "Unconfined");
}

/** Whether any value below `v` names the agent token Secret. */
function mentionsToken(v: unknown): boolean {
    return JSON.stringify(v ?? null).includes(JSON.stringify(SECRET_NAMES.agentToken));
}
