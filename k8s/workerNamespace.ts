import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { TOKEN_SOURCE_ANNOTATIONS } from "../scheduler/clients/kube";
import { SCHEDULER_GROUP, schedulerRbac, sweeperRbac, tokenSyncRbac } from "./rbac";
import { metadataNetworkPolicy, workerJobPolicy, type WorkerShape } from "./workerPolicy";
import {
    AGENT_TOKEN_KEY,
    GIT_CREDENTIALS_KEY,
    GIT_KNOWN_HOSTS_KEY,
    GIT_SSH_KEY,
    HOOKS_CONFIGMAP,
    MANAGED_BY,
    SECRET_NAMES,
} from "../scheduler/core/names";
import { type SpendCaps } from "../scheduler/config/types";

export { SCHEDULER_GROUP };

/** Arguments of WorkerNamespace. */
export interface WorkerNamespaceArgs {
    /** The namespace the worker Jobs run in; created by this component. */
    namespace: string;
    /**
     * The Buildkite agent token: a secret value from config, or the ARN of the Secrets Manager secret
     * the token sync copies it from (then the Secret is created empty and Pulumi never holds the token).
     */
    agentToken: { value: pulumi.Input<string> } | { secretsManagerArn: string; syncGroup: string };
    /** Extra environment variables for every worker (secret values), injected with envFrom. */
    env?: pulumi.Input<Record<string, pulumi.Input<string>>>;
    /** A git-credentials file for HTTPS clones (a secret). */
    gitCredentials?: pulumi.Input<string>;
    /** A private key for git over SSH (a secret), and the known_hosts it trusts. */
    gitSsh?: { key: pulumi.Input<string>; knownHosts: string };
    /** Agent hooks: file name -> script, mounted at the agent's hooks path. */
    hooks?: Record<string, string>;
    /** Spend caps, as a ResourceQuota on the namespace. */
    caps?: SpendCaps;
    /** The Kubernetes group the scheduler's identity belongs to. */
    schedulerGroup?: string;
    /** Whether a queue takes its pod from the job: the scheduler then reads the agent token and PodTemplates. */
    schedulerReadsJobs?: boolean;
    /** The sweep's group, when the sweep runs: it may also read the agent token Secret. */
    sweeperGroup?: string;
    /**
     * The images and service accounts of the stack's workers: with it, a ValidatingAdmissionPolicy
     * lets the Lambdas' groups create only worker Jobs of Scaledkite's shape (workerPolicy.ts).
     */
    workerShape?: WorkerShape;
    /** Pod Security Admission labels for the namespace (podSecurityLabels). */
    podSecurity?: Record<string, string>;
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
    /** The agent token Secret's uid (a replaced Secret is synced again). */
    readonly agentTokenSecretUid: pulumi.Output<string>;

    constructor(name: string, args: WorkerNamespaceArgs, opts?: pulumi.ComponentResourceOptions) {
        super("scaledkite:k8s:WorkerNamespace", name, {}, { ...opts, providers: [args.provider] });
        const parent = { parent: this, provider: args.provider };

        const ns = new k8s.core.v1.Namespace(
            `${name}-namespace`,
            {
                metadata: {
                    name: args.namespace,
                    labels: { ...MANAGED_BY, ...args.podSecurity },
                },
            },
            parent,
        );
        const namespace = ns.metadata.name;
        const inNs = { ...parent, dependsOn: [ns] };

        const secrets = [
            "value" in args.agentToken
                ? createSecret(
                      `${name}-agent-token`,
                      namespace,
                      SECRET_NAMES.agentToken,
                      { [AGENT_TOKEN_KEY]: args.agentToken.value },
                      inNs,
                  )
                : createSyncedSecret(
                      `${name}-agent-token`,
                      namespace,
                      SECRET_NAMES.agentToken,
                      args.agentToken.secretsManagerArn,
                      inNs,
                  ),
        ];
        if ("secretsManagerArn" in args.agentToken) {
            createRbac(
                `${name}-token-sync`,
                tokenSyncRbac(args.namespace, SECRET_NAMES.agentToken, args.agentToken.syncGroup),
                inNs,
            );
        }
        if (args.env !== undefined)
            secrets.push(createSecret(`${name}-env`, namespace, SECRET_NAMES.env, args.env, inNs));
        if (args.gitCredentials !== undefined) {
            secrets.push(
                createSecret(
                    `${name}-git-credentials`,
                    namespace,
                    SECRET_NAMES.gitCredentials,
                    { [GIT_CREDENTIALS_KEY]: args.gitCredentials },
                    inNs,
                ),
            );
        }

        if (args.gitSsh !== undefined) {
            secrets.push(
                createSecret(
                    `${name}-git-ssh`,
                    namespace,
                    SECRET_NAMES.gitSsh,
                    {
                        [GIT_SSH_KEY]: pulumi.output(args.gitSsh.key).apply((k) => (k.endsWith("\n") ? k : `${k}\n`)),
                        [GIT_KNOWN_HOSTS_KEY]: args.gitSsh.knownHosts,
                    },
                    inNs,
                ),
            );
        }
        if (args.hooks !== undefined && Object.keys(args.hooks).length > 0) {
            new k8s.core.v1.ConfigMap(
                `${name}-hooks`,
                {
                    metadata: {
                        name: HOOKS_CONFIGMAP,
                        namespace,
                        labels: { ...MANAGED_BY },
                    },
                    data: args.hooks,
                },
                inNs,
            );
        }

        const quota = spendQuota(args.caps ?? {});
        if (quota) {
            new k8s.core.v1.ResourceQuota(
                `${name}-caps`,
                {
                    metadata: {
                        name: "scaledkite-spend-caps",
                        namespace,
                        labels: { ...MANAGED_BY },
                    },
                    spec: { hard: quota },
                },
                inNs,
            );
        }

        new k8s.networking.v1.NetworkPolicy(
            `${name}-no-instance-metadata`,
            metadataNetworkPolicy(args.namespace) as k8s.networking.v1.NetworkPolicyArgs,
            inNs,
        );

        const role = createSchedulerRole(
            name,
            args.namespace,
            args.schedulerGroup ?? SCHEDULER_GROUP,
            inNs,
            args.schedulerReadsJobs ? { agentTokenSecret: SECRET_NAMES.agentToken } : undefined,
        );
        if (args.sweeperGroup)
            createRbac(
                `${name}-sweeper`,
                sweeperRbac(args.namespace, SECRET_NAMES.agentToken, args.sweeperGroup),
                inNs,
            );
        if (args.workerShape) {
            const groups = [args.schedulerGroup ?? SCHEDULER_GROUP, ...(args.sweeperGroup ? [args.sweeperGroup] : [])];
            const [policy, binding] = workerJobPolicy(args.namespace, groups, args.workerShape);
            const vap = new k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
                `${name}-job-shape`,
                policy as k8s.admissionregistration.v1.ValidatingAdmissionPolicyArgs,
                parent,
            );
            new k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
                `${name}-job-shape`,
                binding as k8s.admissionregistration.v1.ValidatingAdmissionPolicyBindingArgs,
                { ...parent, dependsOn: [vap] },
            );
        }

        this.namespace = namespace;
        this.secretNames = pulumi.all(secrets.map((s) => s.metadata.name));
        this.roleName = role.metadata.name;
        this.agentTokenSecretUid = secrets[0].metadata.uid;
        this.registerOutputs({ namespace: this.namespace, secretNames: this.secretNames, roleName: this.roleName });
    }
}

/**
 * The quota that enforces the spend caps: Kubernetes refuses a worker Job over `maxConcurrentJobs`
 * (the scheduler retries it), and holds back worker pods over the CPU and memory caps.
 */
export function spendQuota(caps: SpendCaps): Record<string, string> | undefined {
    const hard: Record<string, string> = {};
    if (caps.maxConcurrentJobs !== undefined) hard["count/jobs.batch"] = String(caps.maxConcurrentJobs);
    if (caps.maxCpu !== undefined) hard["requests.cpu"] = caps.maxCpu;
    if (caps.maxMemory !== undefined) hard["requests.memory"] = caps.maxMemory;
    return Object.keys(hard).length ? hard : undefined;
}

/** A Secret whose values stay secret in Pulumi state. */
export function createSecret(
    resourceName: string,
    namespace: pulumi.Input<string>,
    secretName: string,
    data: pulumi.Input<Record<string, pulumi.Input<string>>>,
    opts: pulumi.CustomResourceOptions,
): k8s.core.v1.Secret {
    return new k8s.core.v1.Secret(
        resourceName,
        {
            metadata: { name: secretName, namespace, labels: { ...MANAGED_BY } },
            type: "Opaque",
            stringData: pulumi.secret(data),
        },
        { ...opts, additionalSecretOutputs: ["data", "stringData"] },
    );
}

/**
 * A Secret whose value the token sync writes: Pulumi creates it with no data and never sets any, so
 * the value stays out of Pulumi's inputs and a `pulumi up` never overwrites a synced token (with
 * server-side apply, Pulumi's field manager owns no data field; the sync's owns `data.token`). A stack
 * that moves from `agentToken` to the ARN drops the config token here, and the sync during the same
 * `pulumi up` writes the secret's.
 */
export function createSyncedSecret(
    resourceName: string,
    namespace: pulumi.Input<string>,
    secretName: string,
    sourceArn: string,
    opts: pulumi.CustomResourceOptions,
): k8s.core.v1.Secret {
    return new k8s.core.v1.Secret(
        resourceName,
        {
            metadata: {
                name: secretName,
                namespace,
                labels: { ...MANAGED_BY },
                annotations: { [TOKEN_SOURCE_ANNOTATIONS.source]: sourceArn },
            },
            type: "Opaque",
        },
        { ...opts, additionalSecretOutputs: ["data", "stringData"] },
    );
}

/** The scheduler's Role and its binding to the scheduler's group (the manifests of rbac.ts). */
export function createSchedulerRole(
    name: string,
    namespace: string,
    group: string,
    opts: pulumi.CustomResourceOptions,
    readsJobs?: { agentTokenSecret: string },
): k8s.rbac.v1.Role {
    return createRbac(`${name}-scheduler`, schedulerRbac(namespace, group, readsJobs), opts);
}

/** A Role and its RoleBinding from their manifests. */
export function createRbac(
    name: string,
    [role, binding]: [object, object],
    opts: pulumi.CustomResourceOptions,
): k8s.rbac.v1.Role {
    const created = new k8s.rbac.v1.Role(name, role as k8s.rbac.v1.RoleArgs, opts);
    new k8s.rbac.v1.RoleBinding(name, binding as k8s.rbac.v1.RoleBindingArgs, { ...opts, dependsOn: [created] });
    return created;
}
