import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { FARGATE_LABEL, labelValue } from "../scheduler/core/names";

/** Arguments of createFargateProfiles. */
export interface FargateArgs {
    clusterName: string;
    namespace: string;
    /** The queues whose workers run on Fargate. */
    queues: string[];
    /** Private subnets of the cluster's VPC. */
    subnetIds: string[];
}

/** Who may assume the Fargate pod execution role: EKS Fargate, for this cluster's profiles only. Pure. */
export function fargateTrustPolicy(partition: string, region: string, account: string, clusterName: string): object {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Effect: "Allow",
                Principal: { Service: "eks-fargate-pods.amazonaws.com" },
                Action: "sts:AssumeRole",
                // Confused-deputy protection: only the Fargate profiles of this cluster.
                Condition: {
                    ArnLike: {
                        "aws:SourceArn": `arn:${partition}:eks:${region}:${account}:fargateprofile/${clusterName}/*`,
                    },
                },
            },
        ],
    };
}

/** The role Fargate uses to start worker pods (pull images, write logs): AWS's managed policy for it. */
export function createFargatePodExecutionRole(
    name: string,
    clusterName: string,
    opts: pulumi.CustomResourceOptions,
): aws.iam.Role {
    const account = aws.getCallerIdentityOutput({}, opts).accountId;
    const region = aws.getRegionOutput({}, opts).region;
    const partition = aws.getPartitionOutput({}, opts).partition;
    const role = new aws.iam.Role(
        `${name}-fargate-pods`,
        {
            description: "Scaledkite: starts worker pods on EKS Fargate",
            assumeRolePolicy: pulumi
                .all([partition, region, account])
                .apply(([p, r, a]) => JSON.stringify(fargateTrustPolicy(p || "aws", r, a, clusterName))),
        },
        opts,
    );
    new aws.iam.RolePolicyAttachment(
        `${name}-fargate-pods`,
        {
            role: role.name,
            policyArn: "arn:aws:iam::aws:policy/AmazonEKSFargatePodExecutionRolePolicy",
        },
        opts,
    );
    return role;
}

/**
 * One Fargate profile per Fargate queue: it selects the workers' namespace and the queue's label,
 * which the manifest builder puts on that queue's pods. Nothing else in the namespace runs on Fargate.
 */
export function createFargateProfiles(
    name: string,
    args: FargateArgs,
    opts: pulumi.CustomResourceOptions = {},
): aws.eks.FargateProfile[] {
    if (args.queues.length === 0) return [];
    const role = createFargatePodExecutionRole(name, args.clusterName, opts);
    return args.queues.map(
        (queue) =>
            new aws.eks.FargateProfile(
                `${name}-${queue}`,
                {
                    clusterName: args.clusterName,
                    podExecutionRoleArn: role.arn,
                    subnetIds: args.subnetIds,
                    selectors: [{ namespace: args.namespace, labels: { [FARGATE_LABEL]: labelValue(queue)! } }],
                },
                opts,
            ),
    );
}
