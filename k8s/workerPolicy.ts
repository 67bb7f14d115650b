/**
 * What the Lambdas' Kubernetes groups may create: only worker Jobs of the shape Scaledkite makes. A
 * ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA in Kubernetes 1.30) checked by the
 * API server itself, so a leaked scheduler or sweep credential cannot turn "create Jobs in this
 * namespace" into "run any pod" or "read any Secret": the agent container exactly as rendered (its
 * image, command, token file and hooks), the token Secret mounted in it alone, no other Secrets than
 * the stack's workers use, no other images or service accounts, and none of POD_BOUNDARY (host
 * namespaces and paths, a chosen node, a shared process namespace, added capabilities, unconfined
 * profiles, privilege outside the dind sidecar). Plain data, shared by the Pulumi program and the
 * local cluster tools, like rbac.ts.
 */
import { type WorkerSettings } from "../scheduler/core/settings";
import { AGENT_HOOKS_PATH } from "../scheduler/core/agentLauncher";
import { type BoundaryRule, POD_BOUNDARY } from "../scheduler/core/podBoundary";
import { AGENT_CONTAINER, DIND_CONTAINER, LABELS, MANAGED_BY, SECRET_NAMES } from "../scheduler/core/names";
import { DIND_ARGS, DIND_COMMAND } from "../scheduler/core/dind";
import {
    AGENT_ARGS,
    AGENT_COMMAND,
    AGENT_DYNAMIC_ENV,
    AGENT_FIXED_ENV,
    AGENT_MOUNTS,
    AGENT_TOKEN_DIR,
    AGENT_TOKEN_REFERENCE,
} from "../scheduler/core/workerEnv";

/** What a stack's workers may be: the policy admits Jobs of this shape only. */
export interface WorkerShape {
    /** Every image a container may run. */
    images: string[];
    /** The images the agent container may run. */
    agentImages: string[];
    /** The images a privileged dind sidecar may run. */
    dindImages: string[];
    serviceAccounts: string[];
    /** Whether a queue runs dockerd as root (dind `privileged`); if none does, the sidecar must run as non-root. */
    rootDind: boolean;
    /** The Secrets a worker may read (env, envFrom, volumes) besides the agent token, which only the agent container mounts. */
    secrets: string[];
    /** `NAME=value` pairs of the queues' own `env`, which the agent container also carries. */
    agentEnv: string[];
    /** Volume sources a worker may use: Scaledkite's, and any a pod spec patch names. */
    volumeSources: string[];
    /**
     * Images a step may ask for on a queue that takes its pod from the job: "any", or these prefixes
     * (the queues' allowedImages together: the scheduler holds each queue to its own list); undefined
     * when no queue does.
     */
    stepImages?: "any" | string[];
    /**
     * Whether a step may name Secrets of the namespace (the `kubernetes` plugin's envFrom, secretKeyRef
     * and secret volumes, as agent-stack-k8s allows): never the agent token.
     */
    stepSecrets: boolean;
}

/** The volume sources Scaledkite's workers use, and those that hold nothing of the node's or of other Secrets. */
const VOLUME_SOURCES = [
    "configMap",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/** The images named in a pod spec patch's containers (a patch may replace an image). */
function patchImages(patch: Record<string, unknown> | undefined): string[] {
    const out: string[] = [];
    for (const key of ["containers", "initContainers"]) {
        const list = patch?.[key];
        if (Array.isArray(list))
            for (const c of list)
                if (typeof (c as { image?: unknown }).image === "string") out.push((c as { image: string }).image);
    }
    return out;
}

/** The Secret names anywhere in a pod spec patch (secret volumes, projected sources, secretKeyRef, secretRef). */
function patchSecrets(v: unknown, out: string[] = []): string[] {
    if (Array.isArray(v)) for (const x of v) patchSecrets(x, out);
    else if (typeof v === "object" && v !== null) {
        for (const [k, x] of Object.entries(v)) {
            if (k === "secretName" && typeof x === "string") out.push(x);
            else if (
                (k === "secretRef" || k === "secretKeyRef" || k === "secret") &&
                typeof (x as { name?: unknown })?.name === "string"
            )
                out.push((x as { name: string }).name);
            patchSecrets(x, out);
        }
    }
    return out;
}

/** The volume sources a pod spec patch's volumes use (a volume's keys other than its name). */
function patchVolumeSources(patch: Record<string, unknown> | undefined): string[] {
    const volumes = patch?.volumes;
    return Array.isArray(volumes) ? volumes.flatMap((v) => Object.keys(v as object).filter((k) => k !== "name")) : [];
}

const sorted = (values: Iterable<string>) => [...new Set(values)].sort();

/** The shape of a stack's workers, from its queues. Pure. */
export function workerShape(queues: Record<string, WorkerSettings>, workerServiceAccount?: string): WorkerShape {
    const qs = Object.values(queues);
    const dindImages = sorted(qs.filter((q) => q.dind !== "none").map((q) => q.dindImage));
    const agentImages = sorted(qs.map((q) => q.image));
    const serviceAccounts = ["default", ...(workerServiceAccount ? [workerServiceAccount] : [])];
    for (const q of qs) {
        if (q.serviceAccountName) serviceAccounts.push(q.serviceAccountName);
        const patched = q.podSpecPatch?.serviceAccountName;
        if (typeof patched === "string") serviceAccounts.push(patched);
    }
    const shaped = qs.filter((q) => q.stepShape !== "none");
    const stepImages: WorkerShape["stepImages"] = shaped.length
        ? shaped.some((q) => q.allowedImages.length === 0)
            ? "any"
            : sorted(shaped.flatMap((q) => q.allowedImages))
        : undefined;
    const ownSecrets = [SECRET_NAMES.env, SECRET_NAMES.gitCredentials, SECRET_NAMES.gitSsh];
    const queueSecrets = qs.flatMap((q) => [
        ...q.envFrom.flatMap((f) => ("secretRef" in f ? [f.secretRef.name] : [])),
        ...patchSecrets(q.podSpecPatch),
    ]);
    return {
        images: sorted([...agentImages, ...dindImages, ...qs.flatMap((q) => patchImages(q.podSpecPatch))]),
        agentImages,
        dindImages,
        serviceAccounts: sorted(serviceAccounts),
        rootDind: qs.some((q) => q.dind === "privileged"),
        secrets: sorted([...ownSecrets, ...queueSecrets].filter((s) => s !== SECRET_NAMES.agentToken)),
        agentEnv: sorted(qs.flatMap((q) => Object.entries(q.env).map(([k, v]) => `${k}=${v}`))),
        volumeSources: sorted(
            [...VOLUME_SOURCES, ...qs.flatMap((q) => patchVolumeSources(q.podSpecPatch))].filter(
                (k) => k !== "hostPath",
            ),
        ),
        ...(stepImages ? { stepImages } : {}),
        stepSecrets: qs.some((q) => q.stepShape === "plugin"),
    };
}

const list = (values: readonly string[]) => `[${values.map((v) => JSON.stringify(v)).join(", ")}]`;

/** The policy's name for a namespace: policies are cluster-wide, one per stack. */
export function workerPolicyName(namespace: string): string {
    return `scaledkite-workers-${namespace}`;
}

/**
 * The agent container's environment that Scaledkite pins: its token is the mounted file, it hands the
 * job to the command container, and it runs only the launcher's hook. Any other value would run code
 * in the one container that can read the token.
 */
const PINNED_AGENT_ENV: [string, string][] = [
    ["BUILDKITE_AGENT_TOKEN", AGENT_TOKEN_REFERENCE],
    ["BUILDKITE_KUBERNETES_EXEC", "true"],
    ["BUILDKITE_HOOKS_PATH", AGENT_HOOKS_PATH],
];

/**
 * The ValidatingAdmissionPolicy and its binding for the workers' namespace: they apply to Jobs that
 * `groups` create or update there, and admit only the shape Scaledkite renders (POD_BOUNDARY, and
 * the stack's images, service accounts and Secrets). Pure.
 */
export function workerJobPolicy(namespace: string, groups: string[], shape: WorkerShape): [object, object] {
    const name = workerPolicyName(namespace);
    const refused = "Scaledkite's scheduler may only create worker Jobs of the shape it makes:";
    const msg = (rule: BoundaryRule) => `${refused} ${POD_BOUNDARY[rule]}`;
    const q = JSON.stringify;
    const sc = (c: string, field: string) => `has(${c}.securityContext) && has(${c}.securityContext.${field})`;
    const privileged = (c: string) => `(${sc(c, "privileged")} && ${c}.securityContext.privileged)`;
    const unconfined = (x: string) =>
        `((${sc(x, "seccompProfile")} && ${x}.securityContext.seccompProfile.type == "Unconfined")` +
        ` || (${sc(x, "appArmorProfile")} && ${x}.securityContext.appArmorProfile.type == "Unconfined"))`;
    const imageOk = (c: string) =>
        shape.stepImages === "any"
            ? "true"
            : `${c}.image in ${list(shape.images)}` +
              (shape.stepImages?.length ? ` || ${list(shape.stepImages)}.exists(p, ${c}.image.startsWith(p))` : "");
    // Any Secret but the agent token where a step may name Secrets; else only those the stack's workers use.
    const secretOk = (name: string) =>
        shape.stepSecrets ? `${name} != ${q(SECRET_NAMES.agentToken)}` : `${name} in ${list(shape.secrets)}`;
    const envNames = (c: string) => `(has(${c}.env) ? ${c}.env : [])`;
    const agentEnvOk =
        '(has(e.value) && (e.name + "=" + e.value) in variables.agentEnvPairs)' +
        ` || (e.name in ${list(AGENT_DYNAMIC_ENV)} && (has(e.value) || (e.name == "BUILDKITE_AGENT_NAME" && has(e.valueFrom) && has(e.valueFrom.fieldRef))))`;
    const variables = [
        { name: "pod", expression: "object.spec.template.spec" },
        {
            name: "containers",
            expression:
                "variables.pod.containers + (has(variables.pod.initContainers) ? variables.pod.initContainers : [])",
        },
        { name: "volumes", expression: "has(variables.pod.volumes) ? variables.pod.volumes : []" },
        {
            name: "tokenVolumes",
            expression: `variables.volumes.filter(v, has(v.secret) && v.secret.secretName == ${q(SECRET_NAMES.agentToken)}).map(v, v.name)`,
        },
        { name: "agents", expression: `variables.pod.containers.filter(c, c.name == ${q(AGENT_CONTAINER)})` },
        {
            name: "agentEnvPairs",
            expression: list([
                ...PINNED_AGENT_ENV.map(([k, v]) => `${k}=${v}`),
                ...AGENT_FIXED_ENV.map(([k, v]) => `${k}=${v}`),
                ...shape.agentEnv,
            ]),
        },
    ];
    const validations = [
        {
            expression:
                `has(object.metadata.labels) && ${q(LABELS.managedBy)} in object.metadata.labels && object.metadata.labels[${q(LABELS.managedBy)}] == "scaledkite"` +
                ` && has(object.spec.template.metadata) && has(object.spec.template.metadata.labels) && ${q(LABELS.component)} in object.spec.template.metadata.labels` +
                ` && object.spec.template.metadata.labels[${q(LABELS.component)}] == "buildkite-worker"`,
            message: `${refused} its labels (${LABELS.managedBy}=scaledkite, ${LABELS.component}=buildkite-worker) are missing`,
        },
        {
            expression: `variables.containers.all(c, ${imageOk("c")})`,
            messageExpression: `${q(refused)} + " image " + variables.containers.filter(c, !(${imageOk("c")}))[0].image + " is not one of the stack's worker images (${shape.images.join(", ")})${shape.stepImages ? ` nor one a step may ask for (${shape.stepImages === "any" ? "any" : shape.stepImages.join(", ")})` : ""}; change the stack config and pulumi up"`,
        },
        {
            expression: `!has(variables.pod.serviceAccountName) || variables.pod.serviceAccountName in ${list(shape.serviceAccounts)}`,
            messageExpression: `${q(refused)} + " service account " + variables.pod.serviceAccountName + " is not one of the stack's (${shape.serviceAccounts.join(", ")})"`,
        },
        {
            // The deprecated spelling of the same field.
            expression: `!has(variables.pod.serviceAccount) || variables.pod.serviceAccount in ${list(shape.serviceAccounts)}`,
            messageExpression: `${q(refused)} + " service account " + variables.pod.serviceAccount + " is not one of the stack's (${shape.serviceAccounts.join(", ")})"`,
        },
        { expression: "variables.volumes.all(v, !has(v.hostPath))", message: msg("hostPath") },
        {
            expression: `variables.volumes.all(v, ${shape.volumeSources.map((k) => `has(v.${k})`).join(" || ")})`,
            message: `${refused} a volume's source is not one of ${shape.volumeSources.join(", ")}`,
        },
        {
            expression:
                "!(has(variables.pod.hostNetwork) && variables.pod.hostNetwork) && !(has(variables.pod.hostPID) && variables.pod.hostPID) && !(has(variables.pod.hostIPC) && variables.pod.hostIPC)",
            message: msg("hostNamespaces"),
        },
        { expression: '!has(variables.pod.nodeName) || variables.pod.nodeName == ""', message: msg("nodeName") },
        {
            expression: "!has(variables.pod.shareProcessNamespace) || !variables.pod.shareProcessNamespace",
            message: msg("shareProcessNamespace"),
        },
        {
            expression:
                `(!has(variables.pod.initContainers) || variables.pod.initContainers.all(c, !${privileged("c")})) && variables.pod.containers.all(c, !${privileged("c")}` +
                ` || (c.name == ${q(DIND_CONTAINER)} && c.image in ${list(shape.dindImages)} && has(c.command) && c.command == ${list(DIND_COMMAND)} && has(c.args) && c.args == ${list(DIND_ARGS)}))`,
            message: msg("privileged"),
        },
        {
            expression: `variables.containers.all(c, !(${sc("c", "capabilities")} && has(c.securityContext.capabilities.add) && size(c.securityContext.capabilities.add) > 0))`,
            message: msg("capabilities"),
        },
        {
            expression:
                `!${unconfined("variables.pod")} && variables.containers.all(c, !${unconfined("c")})` +
                ' && (!has(object.spec.template.metadata) || !has(object.spec.template.metadata.annotations) || object.spec.template.metadata.annotations.all(k, !k.startsWith("container.apparmor.security.beta.kubernetes.io/") || object.spec.template.metadata.annotations[k] != "unconfined"))',
            message: msg("unconfined"),
        },
        {
            expression:
                "variables.containers.all(c, !has(c.ports) || c.ports.all(p, !has(p.hostPort) || p.hostPort == 0))",
            message: msg("hostPorts"),
        },
        {
            // The token Secret: a volume mounted by the agent container only; never in env or envFrom;
            // every other Secret one the stack's workers use.
            expression:
                `variables.containers.all(c, c.name == ${q(AGENT_CONTAINER)} || !has(c.volumeMounts) || c.volumeMounts.all(m, !(m.name in variables.tokenVolumes)))` +
                ` && variables.volumes.all(v, !has(v.secret) || v.secret.secretName == ${q(SECRET_NAMES.agentToken)} || ${secretOk("v.secret.secretName")})` +
                ` && variables.volumes.all(v, !has(v.projected) || !has(v.projected.sources) || v.projected.sources.all(s, !has(s.secret) || ${secretOk("s.secret.name")}))` +
                ` && variables.containers.all(c, ${envNames("c")}.all(e, !has(e.valueFrom) || !has(e.valueFrom.secretKeyRef) || ${secretOk("e.valueFrom.secretKeyRef.name")}))` +
                ` && variables.containers.all(c, !has(c.envFrom) || c.envFrom.all(f, !has(f.secretRef) || ${secretOk("f.secretRef.name")}))`,
            message: shape.stepSecrets
                ? `${msg("agentToken")}; other Secrets of the namespace a step may name`
                : `${msg("agentToken")}; other Secrets only those the stack's workers use (${shape.secrets.join(", ")})`,
        },
        {
            expression:
                `size(variables.agents) == 1 && variables.agents.all(c, c.image in ${list(shape.agentImages)}` +
                ` && has(c.command) && c.command == ${list(AGENT_COMMAND)} && has(c.args) && c.args == ${list(AGENT_ARGS)}` +
                ` && ${list(PINNED_AGENT_ENV.map(([k]) => k))}.all(n, ${envNames("c")}.filter(e, e.name == n).size() == 1)` +
                ` && ${envNames("c")}.all(e, ${agentEnvOk})` +
                ` && has(c.volumeMounts) && c.volumeMounts.exists(m, m.name in variables.tokenVolumes && m.mountPath == ${q(AGENT_TOKEN_DIR)})` +
                ` && c.volumeMounts.all(m, (m.name + ":" + m.mountPath) in ${list(AGENT_MOUNTS.map(([n, p]) => `${n}:${p}`))}))`,
            message: msg("agentContainer"),
        },
        ...(shape.rootDind
            ? []
            : [
                  {
                      // Every queue's dind is rootless (or off): a privileged container must not run as root.
                      expression: `variables.pod.containers.all(c, !${privileged("c")} || (has(c.securityContext.runAsNonRoot) && c.securityContext.runAsNonRoot && has(c.securityContext.runAsUser) && c.securityContext.runAsUser != 0))`,
                      message: `${refused} the ${DIND_CONTAINER} sidecar runs rootless on every queue, so it must run as a non-root user (runAsNonRoot, runAsUser other than 0)`,
                  },
              ]),
    ];
    return [
        {
            apiVersion: "admissionregistration.k8s.io/v1",
            kind: "ValidatingAdmissionPolicy",
            metadata: { name, labels: { ...MANAGED_BY } },
            spec: {
                failurePolicy: "Fail",
                matchConstraints: {
                    resourceRules: [
                        {
                            apiGroups: ["batch"],
                            apiVersions: ["v1"],
                            operations: ["CREATE", "UPDATE"],
                            resources: ["jobs"],
                        },
                    ],
                },
                // Only the Lambdas' identities: people and controllers are governed by their own RBAC.
                matchConditions: [
                    {
                        name: "scaledkite-identities",
                        expression: `has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in ${list(groups)})`,
                    },
                ],
                variables,
                validations,
            },
        },
        {
            apiVersion: "admissionregistration.k8s.io/v1",
            kind: "ValidatingAdmissionPolicyBinding",
            metadata: { name, labels: { ...MANAGED_BY } },
            spec: {
                policyName: name,
                validationActions: ["Deny"],
                matchResources: { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": namespace } } },
            },
        },
    ];
}

/**
 * The strictest Pod Security Standard the stack's workers meet, for the namespace's
 * `pod-security.kubernetes.io/enforce` label: "privileged" when a queue runs a dind sidecar
 * (either mode), else "baseline" (the agent image runs as root, which "restricted" refuses). Pure.
 */
export function podSecurityLevel(queues: Record<string, WorkerSettings>): "baseline" | "privileged" {
    // Rootless dind too: stock docker:dind-rootless needs a privileged container (manifest.ts).
    return Object.values(queues).some((q) => q.dind !== "none") ? "privileged" : "baseline";
}

/**
 * The Pod Security Standards' version the labels pin: the policies as of this Kubernetes minor, the
 * one the tests run (a newer API server keeps judging by these rules until the stack moves the pin;
 * "latest" would change them under a running stack at a cluster upgrade).
 */
export const POD_SECURITY_VERSION = "v1.34";

/**
 * The namespace labels that make the API server enforce that level on every pod in it, and warn and
 * audit at the same level and version (a Job that would make refused pods is warned about when it is
 * created, not only when its pods fail). Pure.
 */
export function podSecurityLabels(queues: Record<string, WorkerSettings>): Record<string, string> {
    const level = podSecurityLevel(queues);
    const labels: Record<string, string> = {};
    for (const mode of ["enforce", "warn", "audit"]) {
        labels[`pod-security.kubernetes.io/${mode}`] = level;
        labels[`pod-security.kubernetes.io/${mode}-version`] = POD_SECURITY_VERSION;
    }
    return labels;
}

/**
 * What `pulumi preview` says, once, when any queue runs dockerd as root: what that grants, and the way
 * out; undefined when none does. Pure.
 */
export function privilegedDindWarning(queues: Record<string, WorkerSettings>): string | undefined {
    const names = Object.keys(queues).filter((q) => queues[q].dind === "privileged");
    if (names.length === 0) return undefined;
    const unpinned = names.filter(
        (q) => !queues[q].tolerations.length || !(Object.keys(queues[q].nodeSelector).length || queues[q].affinity),
    );
    return (
        `queue${names.length > 1 ? "s" : ""} ${names.join(", ")} run${names.length > 1 ? "" : "s"} dind: privileged: dockerd is root in a privileged container, so every step on ` +
        `${names.length > 1 ? "them" : "it"} can be root on its node (the kubelet's credentials, the Secrets of every pod there, the node's IAM role)` +
        (unpinned.length
            ? `; ${unpinned.join(", ")} ${unpinned.length > 1 ? "are" : "is"} not pinned to a node pool of ${unpinned.length > 1 ? "their" : "its"} own (nodeSelector and a toleration of that pool's taint)`
            : "") +
        `. Use dind: rootless for docker builds without root on the node (README, Security model).`
    );
}

/** The instance metadata service's addresses (IPv4, and IPv6 on Nitro instances). */
export const INSTANCE_METADATA_ADDRESSES = ["169.254.169.254/32", "fd00:ec2::254/128"] as const;

/**
 * A NetworkPolicy that keeps worker pods from the node's instance metadata service, and so from the
 * node's IAM role: all other egress stays open (the Pod Identity agent at 169.254.170.23, DNS, the
 * internet). It takes effect where the cluster's network plugin enforces NetworkPolicy (the VPC CNI
 * with network policies on, Calico, Cilium); the nodes' IMDSv2 hop limit of 1 is the other guard. Pure.
 */
export function metadataNetworkPolicy(namespace: string): object {
    return {
        apiVersion: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        metadata: {
            name: "scaledkite-workers-no-instance-metadata",
            namespace,
            labels: { ...MANAGED_BY },
        },
        spec: {
            podSelector: { matchLabels: { [LABELS.component]: "buildkite-worker" } },
            policyTypes: ["Egress"],
            egress: [
                {
                    to: [
                        { ipBlock: { cidr: "0.0.0.0/0", except: [INSTANCE_METADATA_ADDRESSES[0]] } },
                        { ipBlock: { cidr: "::/0", except: [INSTANCE_METADATA_ADDRESSES[1]] } },
                    ],
                },
            ],
        },
    };
}
