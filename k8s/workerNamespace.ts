import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { AGENT_TOKEN_KEY, GIT_CREDENTIALS_KEY, SECRET_NAMES } from "../scheduler/settings";

/** The Kubernetes group the scheduler's identity is put in (by the EKS access entry). */
export const SCHEDULER_GROUP = "scaledkite:scheduler";
export const SCHEDULER_ROLE = "scaledkite-scheduler";

/** What the scheduler may do in the workers' namespace, and nothing more. */
export const SCHEDULER_RULES: k8s.types.input.rbac.v1.PolicyRule[] = [
    { apiGroups: ["batch"], resources: ["jobs"], verbs: ["create", "get", "list"] },
];

/** Arguments of WorkerNamespace. */
export interface WorkerNamespaceArgs {
    /** The namespace the worker Jobs run in; created by this component. */
    namespace: string;
    /** The Buildkite agent token (a secret). */
    agentToken: pulumi.Input<string>;
    /** Extra environment variables for every worker (secret values), injected with envFrom. */
    env?: pulumi.Input<Record<string, pulumi.Input<string>>>;
    /** A git-credentials file for HTTPS clones (a secret). */
    gitCredentials?: pulumi.Input<string>;
    /** The Kubernetes group the scheduler's identity belongs to. */
    schedulerGroup?: string;
    /** The provider for the target cluster. */
    provider: k8s.Provider;
}

/**
 * Everything workers need inside the cluster: the namespace, the Secrets they read, and a Role that
 * lets the scheduler create and read worker Jobs there, bound to the scheduler's group.
 */
export class WorkerNamespace extends pulumi.ComponentResource {
    readonly namespace: pulumi.Output<string>;
    readonly secretNames: pulumi.Output<string[]>;
    readonly roleName: pulumi.Output<string>;

    constructor(name: string, args: WorkerNamespaceArgs, opts?: pulumi.ComponentResourceOptions) {
        super("scaledkite:k8s:WorkerNamespace", name, {}, { ...opts, providers: [args.provider] });
        const parent = { parent: this, provider: args.provider };

        const ns = new k8s.core.v1.Namespace(`${name}-namespace`, {
            metadata: { name: args.namespace, labels: { "app.kubernetes.io/managed-by": "scaledkite" } },
        }, parent);
        const namespace = ns.metadata.name;
        const inNs = { ...parent, dependsOn: [ns] };

        const secrets = [createSecret(`${name}-agent-token`, namespace, SECRET_NAMES.agentToken, { [AGENT_TOKEN_KEY]: args.agentToken }, inNs)];
        if (args.env !== undefined) secrets.push(createSecret(`${name}-env`, namespace, SECRET_NAMES.env, args.env, inNs));
        if (args.gitCredentials !== undefined) {
            secrets.push(createSecret(`${name}-git-credentials`, namespace, SECRET_NAMES.gitCredentials, { [GIT_CREDENTIALS_KEY]: args.gitCredentials }, inNs));
        }

        const role = createSchedulerRole(name, namespace, args.schedulerGroup ?? SCHEDULER_GROUP, inNs);

        this.namespace = namespace;
        this.secretNames = pulumi.all(secrets.map((s) => s.metadata.name));
        this.roleName = role.metadata.name;
        this.registerOutputs({ namespace: this.namespace, secretNames: this.secretNames, roleName: this.roleName });
    }
}

/** A Secret whose values stay secret in Pulumi state. */
export function createSecret(
    resourceName: string, namespace: pulumi.Input<string>, secretName: string,
    data: pulumi.Input<Record<string, pulumi.Input<string>>>, opts: pulumi.CustomResourceOptions,
): k8s.core.v1.Secret {
    return new k8s.core.v1.Secret(resourceName, {
        metadata: { name: secretName, namespace, labels: { "app.kubernetes.io/managed-by": "scaledkite" } },
        type: "Opaque",
        stringData: pulumi.secret(data),
    }, { ...opts, additionalSecretOutputs: ["data", "stringData"] });
}

/** The scheduler's Role and its binding to the scheduler's group. */
export function createSchedulerRole(name: string, namespace: pulumi.Input<string>, group: string, opts: pulumi.CustomResourceOptions): k8s.rbac.v1.Role {
    const role = new k8s.rbac.v1.Role(`${name}-scheduler`, {
        metadata: { name: SCHEDULER_ROLE, namespace },
        rules: SCHEDULER_RULES,
    }, opts);
    new k8s.rbac.v1.RoleBinding(`${name}-scheduler`, {
        metadata: { name: SCHEDULER_ROLE, namespace },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: group }],
    }, opts);
    return role;
}
