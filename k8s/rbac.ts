/**
 * What the scheduler may do in the cluster: the names and rules of its Role, and the group its
 * identity is put in (by the EKS access entry). Plain data, shared by the Pulumi program and the
 * local cluster tools.
 */

/** The Kubernetes group the scheduler's identity is put in. */
export const SCHEDULER_GROUP = "scaledkite:scheduler";
export const SCHEDULER_ROLE = "scaledkite-scheduler";

export interface PolicyRule {
    apiGroups: string[];
    resources: string[];
    verbs: string[];
}

/** Worker Jobs in the workers' namespace (create; delete the worker of a job cancelled before it ran), and nothing more. */
export const SCHEDULER_RULES: PolicyRule[] = [
    { apiGroups: ["batch"], resources: ["jobs"], verbs: ["create", "get", "list", "delete"] },
];

/** The Role and RoleBinding as manifests. */
export function schedulerRbac(namespace: string, group = SCHEDULER_GROUP): [object, object] {
    return [
        { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: SCHEDULER_ROLE, namespace }, rules: SCHEDULER_RULES },
        {
            apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name: SCHEDULER_ROLE, namespace },
            roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: SCHEDULER_ROLE },
            subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: group }],
        },
    ];
}
