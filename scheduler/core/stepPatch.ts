/**
 * A step's own `podSpecPatch`, applied after the queue's (a strategic merge), within what the queue
 * keeps: the command a patch gives a command container becomes its BUILDKITE_COMMAND; a patch of the
 * agent's, the checkout's, copy-agent's or dind's command, or of the queue's service account, node
 * selector, PriorityClass (from `priorityClasses` or the queue's patch: a step may not jump the
 * line), agent container or token volume, is refused with the field named. Pure.
 */
import type { V1Container, V1PodSpec } from "@kubernetes/client-node";
import { interposedCommand } from "./interposer";
import { AGENT_CONTAINER, AGENT_TOKEN_VOLUME, CHECKOUT_CONTAINER, COPY_AGENT_CONTAINER, DIND_CONTAINER } from "./names";
import type { WorkerSettings } from "./settings";
import type { Interposer, Obj, StepProblem } from "./step";
import { strategicMerge } from "./strategicMerge";

const PLUGIN = "plugins.kubernetes";

/** The pod spec with the step's patch applied, or what the patch may not do. */
export function applyStepPatch(
    spec: V1PodSpec,
    patch: Obj,
    o: { stepNames: string[]; interposer: Interposer; stepCommand: string; worker: WorkerSettings; queue: string },
): V1PodSpec | StepProblem {
    const own = commandsAsEnv(patch, o.stepNames, o.interposer, o.stepCommand);
    if ("problem" in own) return own as StepProblem;
    const patched = strategicMerge(spec as unknown as Obj, own) as unknown as V1PodSpec;
    const changed = lockedFields(spec, patched, o.worker);
    return changed
        ? {
              field: `${PLUGIN}.podSpecPatch`,
              problem: `changes ${changed}, which queue ${o.queue} sets and a step may not change: remove it from the patch`,
          }
        : patched;
}

/**
 * The step's patch with the `command`/`args` it gives a command container turned into that
 * container's BUILDKITE_COMMAND (the container itself keeps running kubernetes-bootstrap), as
 * agent-stack-k8s does (scheduler.go, PatchPodSpec); one that changes the agent's, the checkout's or
 * copy-agent's command is refused. Pure.
 */
function commandsAsEnv(
    patch: Obj,
    stepNames: string[],
    interposer: Interposer,
    stepCommand: string,
): Obj | StepProblem {
    const out: Obj = { ...patch };
    for (const key of ["containers", "initContainers"] as const) {
        const list = patch[key];
        if (!Array.isArray(list)) continue;
        const changed: unknown[] = [];
        for (const [i, item] of list.entries()) {
            const c = item as V1Container;
            const sets = Boolean(c?.command?.length || c?.args?.length);
            if (!sets) {
                changed.push(item);
                continue;
            }
            if (key === "containers" && stepNames.includes(c.name)) {
                const { command, args, ...rest } = c;
                changed.push({
                    ...rest,
                    env: [
                        ...(rest.env ?? []),
                        { name: "BUILDKITE_COMMAND", value: interposedCommand(interposer, command, args, stepCommand) },
                    ],
                });
                continue;
            }
            if ([AGENT_CONTAINER, CHECKOUT_CONTAINER, COPY_AGENT_CONTAINER, DIND_CONTAINER].includes(c.name))
                return {
                    field: `${PLUGIN}.podSpecPatch.${key}[${i}]`,
                    problem: `changes the command of the ${c.name} container, which a step may not change${c.name === CHECKOUT_CONTAINER ? " (use a checkout hook, or checkout.skip and your own clone)" : ""}: remove command and args from it`,
                };
            changed.push(item);
        }
        out[key] = changed;
    }
    return out;
}

/** What a step's patch changed of what its queue holds fixed, or undefined. */
function lockedFields(before: V1PodSpec, after: V1PodSpec, worker: WorkerSettings): string | undefined {
    const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
    if (
        !same(before.serviceAccountName, after.serviceAccountName) ||
        !same(before.serviceAccount, after.serviceAccount)
    )
        return "serviceAccountName";
    for (const [k, v] of Object.entries(worker.nodeSelector))
        if (after.nodeSelector?.[k] !== v) return `nodeSelector.${k}`;
    if (before.priorityClassName && !same(before.priorityClassName, after.priorityClassName))
        return "priorityClassName";
    const agentBefore = before.containers.find((c) => c.name === AGENT_CONTAINER);
    const agentAfter = after.containers.find((c) => c.name === AGENT_CONTAINER);
    if (!agentAfter || !same(agentBefore, agentAfter)) return `the ${AGENT_CONTAINER} container`;
    const token = (s: V1PodSpec) => (s.volumes ?? []).find((v) => v.name === AGENT_TOKEN_VOLUME);
    if (!same(token(before), token(after))) return `the ${AGENT_TOKEN_VOLUME} volume`;
    return undefined;
}
