/** Who a Lambda is: its log group, its role (trusted by Lambda for this account only, one inline policy), and its EKS access entry. */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { LambdaNetwork } from "../config/types";

/**
 * What a cluster-facing Lambda of its own needs besides its code: a log group with retention, a role
 * with one inline policy (made from the log group's ARN), and the EKS access entry that puts the role
 * in its Kubernetes groups.
 */
export function createLambdaIdentity(
    name: string,
    args: {
        description: string;
        policy: (logGroupArn: string) => object;
        clusterName: string;
        kubernetesGroups: string[];
        logRetentionDays: number;
        network?: LambdaNetwork;
    },
    opts: pulumi.CustomResourceOptions,
): { logGroup: aws.cloudwatch.LogGroup; role: aws.iam.Role; access: aws.eks.AccessEntry } {
    const logGroup = new aws.cloudwatch.LogGroup(
        `${name}-logs`,
        { name: `/scaledkite/${pulumi.getStack()}/${name}`, retentionInDays: args.logRetentionDays },
        opts,
    );
    const role = createLambdaRole(name, args.description, logGroup.arn.apply(args.policy), opts, args.network);
    const access = new aws.eks.AccessEntry(
        `${name}-access`,
        {
            clusterName: args.clusterName,
            principalArn: role.arn,
            kubernetesGroups: args.kubernetesGroups,
            type: "STANDARD",
        },
        opts,
    );
    return { logGroup, role, access };
}

/**
 * What a Lambda in a VPC needs: its network interfaces in the configured subnets (the permissions of
 * AWS's AWSLambdaVPCAccessExecutionRole, as an inline statement). Pure.
 */
export function vpcAccessPolicy(): object {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "NetworkInterfaces",
                Effect: "Allow",
                Resource: "*",
                Action: [
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
            },
        ],
    };
}

/**
 * The trust policy of a Lambda's role: Lambda may assume it only on behalf of a function of this
 * account (aws:SourceAccount, AWS's guard against the confused deputy). Pure.
 */
export function lambdaTrustPolicy(account: string): object {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Effect: "Allow",
                Principal: { Service: "lambda.amazonaws.com" },
                Action: "sts:AssumeRole",
                Condition: { StringEquals: { "aws:SourceAccount": account } },
            },
        ],
    };
}

/** A role only Lambda can assume, with one inline policy (and one for its VPC interfaces when in a VPC), no managed policies. */
export function createLambdaRole(
    name: string,
    description: string,
    policy: pulumi.Output<object>,
    opts: pulumi.CustomResourceOptions,
    network?: LambdaNetwork,
): aws.iam.Role {
    const account = aws.getCallerIdentityOutput({}, opts).accountId;
    const role = new aws.iam.Role(
        `${name}-role`,
        {
            description,
            assumeRolePolicy: account.apply((a) => JSON.stringify(lambdaTrustPolicy(a))),
        },
        opts,
    );
    new aws.iam.RolePolicy(`${name}-policy`, { role: role.id, policy: policy.apply((p) => JSON.stringify(p)) }, opts);
    if (network)
        new aws.iam.RolePolicy(`${name}-vpc`, { role: role.id, policy: JSON.stringify(vpcAccessPolicy()) }, opts);
    return role;
}
