/**
 * The worker pod as a job's step asks for it (step.ts reads what it asks): the queue's pod
 * (manifest.ts) turned into the layout agent-stack-k8s gives a step, within the limits the queue sets.
 *
 *   agent            as the queue has it (the token, the launcher): a step never changes it
 *   copy-agent       init container (the agent image): copies buildkite-agent into the shared volume,
 *                    so a step's container runs `kubernetes-bootstrap` whatever its image
 *   checkout         the agent image, BUILDKITE_BOOTSTRAP_PHASES=checkout (unless checkout.skip)
 *   container-0..n   the step's image, or each container of the plugin's podSpec, phases plugin,command,
 *                    each with its own BUILDKITE_COMMAND (commandParams.interposer)
 *   sidecars         the plugin's sidecars, native sidecars next to dind
 *
 * The agent runs the checkout and command containers one after another in BUILDKITE_CONTAINER_ID
 * order and stops at the first that fails (buildkite/agent v3.138.3 kubernetes/runner.go, Status and
 * Exit). The step's podSpecPatch is applied after the queue's own; the queue's service account, node
 * selector, agent container and token cannot be changed by it. Every problem is a value naming the
 * step's field. Pure.
 */
import type { V1Container, V1EnvVar, V1Job, V1PodSpec, V1VolumeMount } from "@kubernetes/client-node";
import { JOB_CONTEXT_PATH, STEP_AGENT_BINARY, STEP_COMMAND_SCRIPT } from "./agentLauncher";
import { AGENT_CONTAINER, CHECKOUT_CONTAINER, COMMAND_CONTAINER, COPY_AGENT_CONTAINER, DIND_CONTAINER } from "./names";
import { queueSettings, type ResourceClass, type SchedulerSettings, type WorkerSettings } from "./settings";
import { type KubernetesPlugin, type Obj, imageProblem, type StepProblem, type StepShape } from "./step";
import { interposedCommand } from "./interposer";
import { applyStepPatch } from "./stepPatch";

/** Where each step container's Job API socket goes (BUILDKITE_SOCKETS_PATH), on the shared volume. */
const SOCKETS_PATH = `${JOB_CONTEXT_PATH}/sockets`;
/** The name of a step's n-th command container when its podSpec gives none (agent-stack-k8s names them so). */
export const stepContainerName = (n: number) => `container-${n}`;

const PLUGIN = "plugins.kubernetes";

/** Whether the queue lets a step use `image` (its allowedImages prefixes; none: any image). Pure. */
export function imageAllowed(worker: Pick<WorkerSettings, "allowedImages">, image: string): boolean {
    return worker.allowedImages.length === 0 || worker.allowedImages.some((p) => image.startsWith(p));
}

/** Whether a step asks for anything beyond its queue's pod. */
export function asksForPod(shape: StepShape): boolean {
    return shape.image !== undefined || shape.plugin !== undefined || shape.resourceClass !== undefined;
}

const envOf = (c: V1Container) => c.env ?? [];
const without = (env: V1EnvVar[], names: string[]) => env.filter((e) => !names.includes(e.name));

/** The images a step's pod asks for, with the field each comes from. */
function askedImages(shape: StepShape): [string, string][] {
    const out: [string, string][] = [];
    if (shape.image) out.push(["image", shape.image]);
    const p = shape.plugin;
    const containers = p?.podSpec?.containers ?? [];
    containers.forEach((c, i) => {
        if (typeof c.image === "string") out.push([`${PLUGIN}.podSpec.containers[${i}].image`, c.image]);
    });
    (p?.sidecars ?? []).forEach((c, i) => {
        if (typeof c.image === "string") out.push([`${PLUGIN}.sidecars[${i}].image`, c.image]);
    });
    for (const key of ["containers", "initContainers"])
        ((p?.podSpecPatch?.[key] as Obj[] | undefined) ?? []).forEach((c, i) => {
            if (typeof c.image === "string") out.push([`${PLUGIN}.podSpecPatch.${key}[${i}].image`, c.image]);
        });
    return out;
}

/** The resource class a step names, or the problem. */
function resourceClassOf(settings: SchedulerSettings, name: string): ResourceClass | StepProblem {
    if (Object.prototype.hasOwnProperty.call(settings.resourceClasses, name)) return settings.resourceClasses[name];
    const known = Object.keys(settings.resourceClasses);
    return {
        field: "agents.resource_class",
        problem: `${JSON.stringify(name)} is not a resource class of this stack (${known.length ? known.join(", ") : "it has none"}): use one of them, or add it to scaledkite:resourceClasses`,
    };
}

const isProblem = (v: unknown): v is StepProblem =>
    typeof v === "object" && v !== null && "problem" in v && "field" in v;

/**
 * The Job for a step that asks for its own pod, from the queue's Job (`base`, made by
 * buildJobManifest for the same job and queue). `podTemplate`, when the step names one, is that
 * PodTemplate's pod spec, read by the caller. Pure.
 */
export function shapeJob(
    settings: SchedulerSettings,
    queue: string,
    base: V1Job,
    shape: StepShape,
    podTemplate?: Partial<V1PodSpec>,
): { job: V1Job } | { refused: StepProblem } {
    const worker = queueSettings(settings, queue);
    if (!worker || !asksForPod(shape)) return { job: base };
    for (const [field, image] of askedImages(shape)) {
        const problem = imageProblem(image);
        if (problem) return { refused: { field, problem: `${JSON.stringify(image)} ${problem}` } };
        if (!imageAllowed(worker, image))
            return {
                refused: {
                    field,
                    problem: `${JSON.stringify(image)} is not an image queue ${queue} allows (it allows images starting with ${worker.allowedImages.join(", ")}): use one of those, or ask for it to be added to the queue's allowedImages`,
                },
            };
    }
    const size = shape.resourceClass === undefined ? undefined : resourceClassOf(settings, shape.resourceClass);
    if (isProblem(size)) return { refused: size };

    const plugin: KubernetesPlugin = shape.plugin ?? {};
    const pod = base.spec!.template.spec!;
    const agent = pod.containers.find((c) => c.name === AGENT_CONTAINER)!;
    const template = pod.containers.find((c) => c.name === COMMAND_CONTAINER)!;
    const interposer = plugin.commandParams?.interposer ?? "buildkite";
    const ctxMount = (template.volumeMounts ?? []).find((m) => m.mountPath === JOB_CONTEXT_PATH)!;

    // The step's own containers: the podSpec's, or one running the step's image (else the agent image).
    const stepPodSpec: Partial<V1PodSpec> = { ...(podTemplate ?? {}), ...(plugin.podSpec ?? {}) };
    const declared = stepPodSpec.containers ?? [];
    const specs: V1Container[] = declared.length ? declared : [{ name: stepContainerName(0) }];
    const skipCheckout = plugin.checkout?.skip === true;
    const first = skipCheckout ? 0 : 1;
    const count = first + specs.length;
    const commandMounts = [...(plugin.extraVolumeMounts ?? []), ...(plugin.commandParams?.extraVolumeMounts ?? [])];
    const commandEnvFrom = [...(plugin.commandParams?.envFrom ?? [])];

    const reserved = [AGENT_CONTAINER, CHECKOUT_CONTAINER, COPY_AGENT_CONTAINER, DIND_CONTAINER, COMMAND_CONTAINER];
    const clash = specs.findIndex((c) => c.name !== undefined && reserved.includes(c.name));
    if (clash >= 0)
        return {
            refused: {
                field: `${PLUGIN}.podSpec.containers[${clash}].name`,
                problem: `${JSON.stringify(specs[clash].name)} is the name of one of Scaledkite's own containers (${reserved.join(", ")}): name it otherwise`,
            },
        };
    const stepContainers: V1Container[] = specs.map((c, i) => {
        const name = c.name || stepContainerName(i);
        // The step's image replaces every command container's (agent-stack-k8s build_inputs.go: applied
        // after the pod is built, to each container that runs a command), before the step's patch.
        const image = shape.image ?? c.image ?? worker.image;
        const mounts = mergeMounts(template.volumeMounts ?? [], c.volumeMounts ?? [], commandMounts);
        return {
            ...c,
            name,
            image,
            command: ["/bin/sh", "-c", STEP_COMMAND_SCRIPT, "scaledkite-command"],
            args: [],
            env: [
                ...without(envOf(template), ["BUILDKITE_CONTAINER_ID"]),
                ...(c.env ?? []),
                { name: "BUILDKITE_CONTAINER_ID", value: String(first + i) },
                { name: "BUILDKITE_BOOTSTRAP_PHASES", value: "plugin,command" },
                // The Job API's socket: a step's image may have no writable $HOME.
                { name: "BUILDKITE_SOCKETS_PATH", value: `${SOCKETS_PATH}/${name}` },
                { name: "BUILDKITE_COMMAND", value: interposedCommand(interposer, c.command, c.args, shape.command) },
                // The step's image may have no bash (the agent's default shell); unless the container says otherwise.
                ...((c.env ?? []).some((e) => e.name === "BUILDKITE_SHELL")
                    ? []
                    : [{ name: "BUILDKITE_SHELL", value: "/bin/sh -e -c" }]),
            ],
            envFrom: [
                ...(template.envFrom ?? []),
                ...(c.envFrom ?? []),
                ...(commandEnvFrom as V1Container["envFrom"] & object),
            ],
            workingDir: c.workingDir ?? template.workingDir,
            securityContext: { ...(c.securityContext ?? {}), ...template.securityContext },
            resources: size ? size.resources : (c.resources ?? template.resources),
            volumeMounts: mounts,
        };
    });
    const checkout: V1Container[] = skipCheckout
        ? []
        : [
              {
                  ...template,
                  name: CHECKOUT_CONTAINER,
                  image: worker.image,
                  env: [
                      ...without(envOf(template), ["BUILDKITE_CONTAINER_ID"]),
                      { name: "BUILDKITE_CONTAINER_ID", value: "0" },
                      { name: "BUILDKITE_BOOTSTRAP_PHASES", value: "plugin,checkout" },
                  ],
                  envFrom: [
                      ...(template.envFrom ?? []),
                      ...((plugin.gitEnvFrom ?? plugin.checkout?.envFrom ?? []) as []),
                  ],
                  volumeMounts: mergeMounts(
                      template.volumeMounts ?? [],
                      [],
                      (plugin.extraVolumeMounts ?? []) as V1VolumeMount[],
                  ),
              },
          ];
    const copyAgent: V1Container = {
        name: COPY_AGENT_CONTAINER,
        image: worker.image,
        command: [
            "/bin/sh",
            "-c",
            `mkdir -p ${STEP_AGENT_BINARY.replace(/\/[^/]+$/, "")} ${SOCKETS_PATH} && chmod 0777 ${SOCKETS_PATH} && cp "$(command -v buildkite-agent)" ${STEP_AGENT_BINARY}`,
        ],
        securityContext: template.securityContext,
        resources: template.resources,
        volumeMounts: [ctxMount],
    };
    const sidecarMounts = plugin.sidecarParams?.extraVolumeMounts ?? [];
    const sidecars: V1Container[] = (plugin.sidecars ?? []).map((c, i) => ({
        ...c,
        name: c.name ?? `sidecar-${i}`,
        restartPolicy: "Always",
        envFrom: [...(c.envFrom ?? []), ...(plugin.sidecarParams?.envFrom ?? []), ...(plugin.gitEnvFrom ?? [])],
        volumeMounts: mergeMounts(c.volumeMounts ?? [], [ctxMount], plugin.extraVolumeMounts ?? [], sidecarMounts),
    }));

    // A step's pod that runs as a non-root user (podSpec.securityContext) still runs Scaledkite's own
    // containers as the images' root: the agent reads its root-owned token file, the checkout writes the
    // build directory (agent-stack-k8s runs its checkout and copy-agent as root in that case too).
    const asImageUser = (c: V1Container): V1Container =>
        stepPodSpec.securityContext?.runAsUser || stepPodSpec.securityContext?.runAsNonRoot
            ? { ...c, securityContext: { ...c.securityContext, runAsUser: 0, runAsGroup: 0, runAsNonRoot: false } }
            : c;
    const agentEnv = (agent.env ?? []).map((e) =>
        e.name === "BUILDKITE_CONTAINER_COUNT" ? { name: e.name, value: String(count) } : e,
    );
    const shapedAgent: V1Container = { ...agent, env: [...agentEnv, ...checkoutEnv(plugin)] };

    const dind = pod.containers.filter((c) => c.name === DIND_CONTAINER);
    let spec: V1PodSpec = {
        ...stripContainers(stepPodSpec),
        ...pod,
        initContainers: [asImageUser(copyAgent), ...(stepPodSpec.initContainers ?? []), ...sidecars],
        containers: [asImageUser(shapedAgent), ...checkout.map(asImageUser), ...stepContainers, ...dind],
        volumes: [...(pod.volumes ?? []), ...(stepPodSpec.volumes ?? [])],
        ...(size ? { nodeSelector: { ...(pod.nodeSelector ?? {}), ...size.nodeSelector } } : {}),
    };
    if (plugin.podSpecPatch) {
        const patched = applyStepPatch(spec, plugin.podSpecPatch, {
            stepNames: stepContainers.map((c) => c.name),
            interposer,
            stepCommand: shape.command,
            worker,
            queue,
        });
        if (isProblem(patched)) return { refused: patched };
        spec = patched;
    }
    const meta = plugin.metadata ?? {};
    const job: V1Job = {
        ...base,
        spec: {
            ...base.spec!,
            ...(plugin.jobActiveDeadlineSeconds ? { activeDeadlineSeconds: plugin.jobActiveDeadlineSeconds } : {}),
            template: {
                metadata: {
                    ...base.spec!.template.metadata,
                    // The step's labels and annotations never replace Scaledkite's own.
                    labels: { ...(meta.labels ?? {}), ...base.spec!.template.metadata?.labels },
                    annotations: { ...(meta.annotations ?? {}), ...base.spec!.template.metadata?.annotations },
                },
                spec,
            },
        },
    };
    return { job };
}

/** The pod spec without its containers (the step's containers are made above). */
function stripContainers(spec: Partial<V1PodSpec>): Partial<V1PodSpec> {
    const { containers: _c, initContainers: _i, volumes: _v, ...rest } = spec;
    return rest;
}

/** Mounts by path: the queue's first (the shared volume, the build directory), then the step's where their paths are free. */
function mergeMounts(base: V1VolumeMount[], ...more: V1VolumeMount[][]): V1VolumeMount[] {
    const out = [...base];
    for (const m of more.flat()) if (!out.some((b) => b.mountPath === m.mountPath)) out.push(m);
    return out;
}

/**
 * The checkout's settings as the agent takes them: the agent sends its own git flags to every
 * container and they win over a container's (buildkite/agent v3.138.3 agent/job_runner.go,
 * createEnvironment), so they are the agent container's environment.
 */
function checkoutEnv(plugin: KubernetesPlugin): V1EnvVar[] {
    const c = plugin.checkout ?? {};
    const env: [string, string | undefined][] = [
        ["BUILDKITE_GIT_CLONE_FLAGS", c.cloneFlags],
        ["BUILDKITE_GIT_FETCH_FLAGS", c.fetchFlags],
        ["BUILDKITE_GIT_CHECKOUT_FLAGS", c.checkoutFlags],
        ["BUILDKITE_GIT_CLEAN_FLAGS", c.cleanFlags],
        ["BUILDKITE_NO_GIT_SUBMODULES", c.noSubmodules ? "true" : undefined],
        ["BUILDKITE_GIT_SUBMODULE_CLONE_CONFIG", c.submoduleCloneConfig?.join(",")],
    ];
    return env.filter((e): e is [string, string] => e[1] !== undefined).map(([name, value]) => ({ name, value }));
}
