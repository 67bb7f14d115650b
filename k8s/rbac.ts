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
    resourceNames?: string[];
}

/** Worker Jobs in the workers' namespace (create; delete the worker of a job cancelled before it ran), and nothing more. */
export const SCHEDULER_RULES: PolicyRule[] = [
    { apiGroups: ["batch"], resources: ["jobs"], verbs: ["create", "get", "list", "delete"] },
];

/**
 * The scheduler's rules; when a queue takes its pod from the job, also the agent token Secret (by
 * name: the Stacks API takes it) and PodTemplates (a step's `podTemplate` names one), read only.
 */
export function schedulerRules(readsJobs: { agentTokenSecret: string } | undefined): PolicyRule[] {
    return readsJobs
        ? [
              ...SCHEDULER_RULES,
              { apiGroups: [""], resources: ["secrets"], verbs: ["get"], resourceNames: [readsJobs.agentTokenSecret] },
              { apiGroups: [""], resources: ["podtemplates"], verbs: ["get"] },
          ]
        : SCHEDULER_RULES;
}

/** The sweep's identity: its own group, so only it may read the agent token. */
export const SWEEPER_GROUP = "scaledkite:sweeper";
export const SWEEPER_ROLE = "scaledkite-sweeper";

/**
 * Worker Jobs as the scheduler has them, the pods and their events to find workers that will never run, and the agent
 * token Secret (by name) to call the Stacks API.
 */
export function sweeperRules(agentTokenSecret: string): PolicyRule[] {
    return [
        // list and watch: the sweep's watch holds its view of the workers between listings (sweep/watch.ts).
        { apiGroups: ["batch"], resources: ["jobs"], verbs: ["create", "get", "list", "watch", "delete"] },
        { apiGroups: [""], resources: ["pods"], verbs: ["list", "watch"] },
        // When a worker's container first failed to start (the kubelet's events), so a passing failure is not fatal.
        { apiGroups: [""], resources: ["events"], verbs: ["list"] },
        { apiGroups: [""], resources: ["secrets"], verbs: ["get"], resourceNames: [agentTokenSecret] },
    ];
}

/** The token sync's identity: its own group, the only one that may change the agent token Secret. */
export const TOKEN_SYNC_GROUP = "scaledkite:token-sync";
export const TOKEN_SYNC_ROLE = "scaledkite-token-sync";

/** Read and update the agent token Secret, by name: no other Secret, no create or delete. */
export function tokenSyncRules(agentTokenSecret: string): PolicyRule[] {
    return [{ apiGroups: [""], resources: ["secrets"], verbs: ["get", "patch"], resourceNames: [agentTokenSecret] }];
}

function roleAndBinding(name: string, namespace: string, rules: PolicyRule[], group: string): [object, object] {
    return [
        { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name, namespace }, rules },
        {
            apiVersion: "rbac.authorization.k8s.io/v1",
            kind: "RoleBinding",
            metadata: { name, namespace },
            roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
            subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: group }],
        },
    ];
}

/** The scheduler's Role and RoleBinding as manifests. */
export function schedulerRbac(
    namespace: string,
    group = SCHEDULER_GROUP,
    readsJobs?: { agentTokenSecret: string },
): [object, object] {
    return roleAndBinding(SCHEDULER_ROLE, namespace, schedulerRules(readsJobs), group);
}

/** The sweep's Role and RoleBinding as manifests. */
export function sweeperRbac(namespace: string, agentTokenSecret: string, group = SWEEPER_GROUP): [object, object] {
    return roleAndBinding(SWEEPER_ROLE, namespace, sweeperRules(agentTokenSecret), group);
}

/** The token sync's Role and RoleBinding as manifests. */
export function tokenSyncRbac(namespace: string, agentTokenSecret: string, group = TOKEN_SYNC_GROUP): [object, object] {
    return roleAndBinding(TOKEN_SYNC_ROLE, namespace, tokenSyncRules(agentTokenSecret), group);
}
