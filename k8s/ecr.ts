/**
 * ECR for the workers (`scaledkite:ecrRegistries`), without long-lived keys or a custom image:
 * - an IAM role for the workers, allowed to pull from (and, where configured, push to) exactly the
 *   listed registries and repositories;
 * - the workers' service account, bound to that role by EKS Pod Identity (default) or IRSA;
 * - an agent environment hook (in a ConfigMap, beside the user's hooks) that runs ecr-login.sh:
 *   it logs `docker` in to each registry with the role's credentials before every job, so docker in
 *   the dind sidecar can pull and push.
 * Worker images themselves are pulled by the node (or, on Fargate, the pod execution role).
 */
import * as aws from "@pulumi/aws";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ecrHookFiles } from "./ecrLogin";
import { ECR_HOOKS_CONFIGMAP, MANAGED_BY, WORKER_SERVICE_ACCOUNT } from "../scheduler/core/names";
import { type EcrRegistry, type WorkerIdentity } from "../scheduler/config/types";

const PULL = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"];
const PUSH = ["ecr:CompleteLayerUpload", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"];

/**
 * The workers' role policy: a login token (ECR grants that action on "*" only), and per registry pull,
 * or pull and push, on its listed repositories. Pure.
 */
export function ecrPolicy(registries: EcrRegistry[]): object {
    return {
        Version: "2012-10-17",
        Statement: [
            { Sid: "EcrLogin", Effect: "Allow", Action: ["ecr:GetAuthorizationToken"], Resource: "*" },
            ...registries.map((r, i) => ({
                Sid: `${r.push ? "PullPush" : "Pull"}${i}`,
                Effect: "Allow",
                Action: r.push ? [...PULL, ...PUSH] : PULL,
                Resource: r.repositories.map(
                    (repo) => `arn:${r.partition}:ecr:${r.region}:${r.account}:repository/${repo}`,
                ),
            })),
        ],
    };
}

/**
 * Who may assume the workers' role: EKS Pod Identity for the one service account of this cluster and
 * namespace (the session tags Pod Identity sets: without them any Pod Identity association in the
 * account could assume it), or the cluster's OIDC issuer for that service account. Pure.
 */
export function workerTrustPolicy(
    identity: WorkerIdentity,
    account: string,
    namespace: string,
    oidcIssuer?: string,
    partition = "aws",
    clusterName = "",
): object {
    if (identity === "podIdentity") {
        return {
            Version: "2012-10-17",
            Statement: [
                {
                    Effect: "Allow",
                    Principal: { Service: "pods.eks.amazonaws.com" },
                    Action: ["sts:AssumeRole", "sts:TagSession"],
                    Condition: {
                        StringEquals: {
                            "aws:SourceAccount": account,
                            "aws:RequestTag/eks-cluster-name": clusterName,
                            "aws:RequestTag/kubernetes-namespace": namespace,
                            "aws:RequestTag/kubernetes-service-account": WORKER_SERVICE_ACCOUNT,
                        },
                    },
                },
            ],
        };
    }
    const issuer = (oidcIssuer ?? "").replace(/^https:\/\//, "");
    if (!issuer)
        throw new pulumi.RunError(
            `the cluster has no OIDC issuer, so IRSA cannot work: use scaledkite:workerIdentity podIdentity, or enable the cluster's IAM OIDC provider`,
        );
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Effect: "Allow",
                Principal: { Federated: `arn:${partition}:iam::${account}:oidc-provider/${issuer}` },
                Action: "sts:AssumeRoleWithWebIdentity",
                Condition: {
                    StringEquals: {
                        [`${issuer}:sub`]: `system:serviceaccount:${namespace}:${WORKER_SERVICE_ACCOUNT}`,
                        [`${issuer}:aud`]: "sts.amazonaws.com",
                    },
                },
            },
        ],
    };
}

/** Arguments of WorkerEcrAccess. */
export interface WorkerEcrAccessArgs {
    clusterName: string;
    /** The cluster's OIDC issuer URL (IRSA only). */
    oidcIssuer: pulumi.Input<string>;
    namespace: pulumi.Input<string>;
    registries: EcrRegistry[];
    identity: WorkerIdentity;
    provider: k8s.Provider;
}

export class WorkerEcrAccess extends pulumi.ComponentResource {
    readonly roleArn: pulumi.Output<string>;
    readonly serviceAccountName: pulumi.Output<string>;

    constructor(name: string, args: WorkerEcrAccessArgs, opts?: pulumi.ComponentResourceOptions) {
        super("scaledkite:k8s:WorkerEcrAccess", name, {}, { ...opts, providers: [args.provider] });
        const parent = { parent: this };
        const inCluster = { parent: this, provider: args.provider };
        const account = aws.getCallerIdentityOutput({}, parent).accountId;
        const partition = aws.getPartitionOutput({}, parent).partition;

        const role = new aws.iam.Role(
            `${name}-workers`,
            {
                description:
                    "Scaledkite workers: pull from (and push to) the ECR registries of scaledkite:ecrRegistries",
                assumeRolePolicy: pulumi
                    .all([account, args.namespace, args.oidcIssuer, partition])
                    .apply(([a, ns, issuer, p]) =>
                        JSON.stringify(workerTrustPolicy(args.identity, a, ns, issuer, p || "aws", args.clusterName)),
                    ),
            },
            parent,
        );
        new aws.iam.RolePolicy(
            `${name}-workers`,
            { role: role.id, policy: JSON.stringify(ecrPolicy(args.registries)) },
            parent,
        );

        const labels = { ...MANAGED_BY };
        const sa = new k8s.core.v1.ServiceAccount(
            `${name}-workers`,
            {
                metadata: {
                    name: WORKER_SERVICE_ACCOUNT,
                    namespace: args.namespace,
                    labels,
                    ...(args.identity === "irsa" ? { annotations: { "eks.amazonaws.com/role-arn": role.arn } } : {}),
                },
                // Workers need no Kubernetes API access; Pod Identity and IRSA mount their own tokens.
                automountServiceAccountToken: false,
            },
            inCluster,
        );
        if (args.identity === "podIdentity") {
            new aws.eks.PodIdentityAssociation(
                `${name}-workers`,
                {
                    clusterName: args.clusterName,
                    namespace: args.namespace,
                    serviceAccount: WORKER_SERVICE_ACCOUNT,
                    roleArn: role.arn,
                },
                { ...parent, dependsOn: [sa] },
            );
        }
        new k8s.core.v1.ConfigMap(
            `${name}-login`,
            {
                metadata: { name: ECR_HOOKS_CONFIGMAP, namespace: args.namespace, labels },
                data: ecrHookFiles(args.registries),
            },
            inCluster,
        );

        this.roleArn = role.arn;
        this.serviceAccountName = sa.metadata.name;
        this.registerOutputs({ roleArn: this.roleArn, serviceAccountName: this.serviceAccountName });
    }
}
