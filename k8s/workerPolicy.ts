/**
 * What the Lambdas' Kubernetes groups may create: only worker Jobs of the shape Scaledkite makes. A
 * ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA in Kubernetes 1.30) checked by the
 * API server itself, so a leaked scheduler or sweep credential cannot turn "create Jobs in this
 * namespace" into "run any pod": no other images or service accounts, no hostPath, no host
 * namespaces, and privilege only for the dind sidecar. Plain data, shared by the Pulumi program and
 * the local cluster tools, like rbac.ts.
 */
import type { WorkerSettings } from "../scheduler/core/settings";
import { DIND_CONTAINER, LABELS } from "../scheduler/core/manifest";

/** The images and service accounts a stack's workers may use. */
export interface WorkerShape {
    images: string[];
    serviceAccounts: string[];
    /** Whether a queue runs dockerd as root (dind `privileged`); if none does, the sidecar must run as non-root. */
    rootDind: boolean;
}

/** The images named in a pod spec patch's containers (a patch may replace an image). */
function patchImages(patch: Record<string, unknown> | undefined): string[] {
    const out: string[] = [];
    for (const key of ["containers", "initContainers"]) {
        const list = patch?.[key];
        if (Array.isArray(list)) for (const c of list) if (typeof (c as { image?: unknown }).image === "string") out.push((c as { image: string }).image);
    }
    return out;
}

/** The shape of a stack's workers, from its queues. Pure. */
export function workerShape(queues: Record<string, WorkerSettings>, workerServiceAccount?: string): WorkerShape {
    const images = new Set<string>();
    const serviceAccounts = new Set<string>(["default"]);
    if (workerServiceAccount) serviceAccounts.add(workerServiceAccount);
    for (const q of Object.values(queues)) {
        images.add(q.image);
        if (q.dind !== "none") images.add(q.dindImage);
        for (const i of patchImages(q.podSpecPatch)) images.add(i);
        if (q.serviceAccountName) serviceAccounts.add(q.serviceAccountName);
        const patched = q.podSpecPatch?.serviceAccountName;
        if (typeof patched === "string") serviceAccounts.add(patched);
    }
    const rootDind = Object.values(queues).some((q) => q.dind === "privileged");
    return { images: [...images].sort(), serviceAccounts: [...serviceAccounts].sort(), rootDind };
}

const list = (values: string[]) => `[${values.map((v) => JSON.stringify(v)).join(", ")}]`;

/** The policy's name for a namespace: policies are cluster-wide, one per stack. */
export function workerPolicyName(namespace: string): string {
    return `scaledkite-workers-${namespace}`;
}

/**
 * The ValidatingAdmissionPolicy and its binding for the workers' namespace: they apply to Jobs that
 * `groups` create or update there. Pure.
 */
export function workerJobPolicy(namespace: string, groups: string[], shape: WorkerShape): [object, object] {
    const name = workerPolicyName(namespace);
    const pod = "object.spec.template.spec";
    const allContainers = `(${pod}.containers + (has(${pod}.initContainers) ? ${pod}.initContainers : []))`;
    const notPrivileged = (c: string) => `!has(${c}.securityContext) || !has(${c}.securityContext.privileged) || !${c}.securityContext.privileged`;
    const refused = "Scaledkite's scheduler may only create worker Jobs of the shape it makes:";
    const validations = [
        {
            expression: `has(object.metadata.labels) && ${JSON.stringify(LABELS.managedBy)} in object.metadata.labels && object.metadata.labels[${JSON.stringify(LABELS.managedBy)}] == "scaledkite"`
                + ` && has(object.spec.template.metadata) && has(object.spec.template.metadata.labels) && ${JSON.stringify(LABELS.component)} in object.spec.template.metadata.labels`
                + ` && object.spec.template.metadata.labels[${JSON.stringify(LABELS.component)}] == "buildkite-worker"`,
            message: `${refused} its labels (${LABELS.managedBy}=scaledkite, ${LABELS.component}=buildkite-worker) are missing`,
        },
        {
            expression: `${allContainers}.all(c, c.image in ${list(shape.images)})`,
            messageExpression: `${JSON.stringify(refused)} + " image " + ${allContainers}.filter(c, !(c.image in ${list(shape.images)}))[0].image + " is not one of the stack's worker images (${shape.images.join(", ")}); change the stack config and pulumi up"`,
        },
        {
            expression: `!has(${pod}.serviceAccountName) || ${pod}.serviceAccountName in ${list(shape.serviceAccounts)}`,
            messageExpression: `${JSON.stringify(refused)} + " service account " + ${pod}.serviceAccountName + " is not one of the stack's (${shape.serviceAccounts.join(", ")})"`,
        },
        {
            // The deprecated spelling of the same field.
            expression: `!has(${pod}.serviceAccount) || ${pod}.serviceAccount in ${list(shape.serviceAccounts)}`,
            messageExpression: `${JSON.stringify(refused)} + " service account " + ${pod}.serviceAccount + " is not one of the stack's (${shape.serviceAccounts.join(", ")})"`,
        },
        {
            expression: `!has(${pod}.volumes) || ${pod}.volumes.all(v, !has(v.hostPath))`,
            message: `${refused} hostPath volumes are not allowed`,
        },
        {
            expression: `!(has(${pod}.hostNetwork) && ${pod}.hostNetwork) && !(has(${pod}.hostPID) && ${pod}.hostPID) && !(has(${pod}.hostIPC) && ${pod}.hostIPC)`,
            message: `${refused} host namespaces (hostNetwork, hostPID, hostIPC) are not allowed`,
        },
        {
            expression: `${pod}.containers.all(c, ${notPrivileged("c")}) && (!has(${pod}.initContainers) || ${pod}.initContainers.all(c, c.name == ${JSON.stringify(DIND_CONTAINER)} || ${notPrivileged("c")}))`,
            message: `${refused} only the ${DIND_CONTAINER} sidecar may be privileged`,
        },
        ...(shape.rootDind ? [] : [{
            // Every queue's dind is rootless (or off): a privileged sidecar must not run as root.
            expression: `!has(${pod}.initContainers) || ${pod}.initContainers.all(c, ${notPrivileged("c")} || (has(c.securityContext.runAsNonRoot) && c.securityContext.runAsNonRoot && has(c.securityContext.runAsUser) && c.securityContext.runAsUser != 0))`,
            message: `${refused} the ${DIND_CONTAINER} sidecar runs rootless on every queue, so it must run as a non-root user (runAsNonRoot, runAsUser other than 0)`,
        }]),
    ];
    return [
        {
            apiVersion: "admissionregistration.k8s.io/v1", kind: "ValidatingAdmissionPolicy",
            metadata: { name, labels: { [LABELS.managedBy]: "scaledkite" } },
            spec: {
                failurePolicy: "Fail",
                matchConstraints: { resourceRules: [{ apiGroups: ["batch"], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["jobs"] }] },
                // Only the Lambdas' identities: people and controllers are governed by their own RBAC.
                matchConditions: [{ name: "scaledkite-identities", expression: `has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in ${list(groups)})` }],
                validations,
            },
        },
        {
            apiVersion: "admissionregistration.k8s.io/v1", kind: "ValidatingAdmissionPolicyBinding",
            metadata: { name, labels: { [LABELS.managedBy]: "scaledkite" } },
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

/** The namespace labels that make the API server enforce that level on every pod in it. Pure. */
export function podSecurityLabels(queues: Record<string, WorkerSettings>): Record<string, string> {
    return { "pod-security.kubernetes.io/enforce": podSecurityLevel(queues), "pod-security.kubernetes.io/enforce-version": "latest" };
}
