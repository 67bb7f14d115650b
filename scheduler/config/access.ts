/** How the stack reaches outside: the agent token's source, the workers' ECR registries, the Lambdas' VPC. Pure. */
import { SECRET_ARN } from "../clients/secretsManager";
import { setting } from "./declaration";
import {
    asBoolean,
    asString,
    asStringList,
    intOrDefault,
    isSet,
    type Problems,
    type Raw,
    setOtherThanDefault,
    structured,
} from "./readers";
import type { AgentTokenSource, EcrRegistry, LambdaNetwork, StackConfig, WorkerIdentity } from "./types";

export function readLambdaNetwork(raw: Raw, p: Problems): LambdaNetwork | undefined {
    const subnetIds =
        asStringList(raw.lambdaSubnetIds, "lambdaSubnetIds", p, (id) =>
            /^subnet-[0-9a-f]+$/.test(id) ? undefined : `has ${JSON.stringify(id)}, not a subnet id (subnet-0123abcd…)`,
        ) ?? [];
    const securityGroupIds =
        asStringList(raw.lambdaSecurityGroupIds, "lambdaSecurityGroupIds", p, (id) =>
            /^sg-[0-9a-f]+$/.test(id) ? undefined : `has ${JSON.stringify(id)}, not a security group id (sg-0123abcd…)`,
        ) ?? [];
    if (subnetIds.length === 0 && securityGroupIds.length === 0) return undefined;
    if (subnetIds.length === 0 || securityGroupIds.length === 0) {
        p.add(
            subnetIds.length === 0 ? "lambdaSubnetIds" : "lambdaSecurityGroupIds",
            `is needed too: a Lambda in a VPC needs both subnets and security groups (pulumi config set --path 'scaledkite:${subnetIds.length === 0 ? "lambdaSubnetIds[0]" : "lambdaSecurityGroupIds[0]"}' …)`,
        );
        return undefined;
    }
    return { subnetIds, securityGroupIds };
}

export const ECR_REGISTRY = /^(\d{12})\.dkr\.ecr(-fips)?\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/;
const REPOSITORY_PATTERN = /^[a-z0-9*]([a-z0-9._/*-]{0,254})$/;

/** ECR registries (a list of hosts, or of {registry, push, repositories}) and the worker identity. */
export function readEcr(raw: Raw, p: Problems): StackConfig["ecr"] {
    const identityRaw = asString(raw.workerIdentity, "workerIdentity", p);
    if (identityRaw !== undefined && !setting("workerIdentity").values!.includes(identityRaw)) {
        p.add(
            "workerIdentity",
            `must be podIdentity (EKS Pod Identity, the default) or irsa (IAM roles for service accounts), got ${JSON.stringify(identityRaw)}`,
        );
    }
    const identity: WorkerIdentity = identityRaw === "irsa" ? "irsa" : "podIdentity";
    const v = structured(raw.ecrRegistries, "ecrRegistries", p);
    if (v === undefined || v === null || v === "") {
        if (setOtherThanDefault(raw, "workerIdentity"))
            p.add(
                "workerIdentity",
                `is set without scaledkite:ecrRegistries: it only applies to the workers' ECR role`,
            );
        return undefined;
    }
    const example = `e.g. ["123456789012.dkr.ecr.us-east-1.amazonaws.com", {"registry": "210987654321.dkr.ecr.eu-west-1.amazonaws.com", "push": true, "repositories": ["ci/*"]}]`;
    if (!Array.isArray(v) || v.length === 0) {
        p.add("ecrRegistries", `must be a non-empty list of registries, ${example}`);
        return undefined;
    }
    const registries: EcrRegistry[] = [];
    v.forEach((entry, i) => {
        const key = `ecrRegistries[${i}]`;
        const e = typeof entry === "string" ? { registry: entry } : entry;
        if (typeof e !== "object" || e === null || Array.isArray(e)) {
            p.add(key, `must be a registry host or {"registry": ..., "push": true|false, "repositories": [...]}`);
            return;
        }
        for (const k of Object.keys(e))
            if (!["registry", "push", "repositories"].includes(k))
                p.add(`${key}.${k}`, `is not a registry setting: use registry, push, repositories`);
        const host = asString((e as Raw).registry, `${key}.registry`, p);
        const m = host === undefined ? null : ECR_REGISTRY.exec(host);
        if (!m) {
            p.add(
                `${key}.registry`,
                `${JSON.stringify(host ?? null)} is not an ECR registry host (<account>.dkr.ecr.<region>.amazonaws.com)`,
            );
            return;
        }
        if (registries.some((r) => r.registry === host)) p.add(`${key}.registry`, `${host} is listed twice`);
        const push = asBoolean((e as Raw).push, `${key}.push`, p) ?? false;
        const repositories = asStringList((e as Raw).repositories, `${key}.repositories`, p, (r) =>
            REPOSITORY_PATTERN.test(r)
                ? undefined
                : `has ${JSON.stringify(r)}, not a repository name or pattern (e.g. ci/*)`,
        ) ?? ["*"];
        if (repositories.length === 0)
            p.add(
                `${key}.repositories`,
                `is empty: leave it out to allow every repository, or name some (e.g. ["ci/*"])`,
            );
        registries.push({
            registry: host!,
            partition: m[4] ? "aws-cn" : "aws",
            account: m[1],
            region: m[3],
            push,
            repositories,
        });
    });
    return { registries, identity };
}

/** The agent token's source: exactly one of agentToken (secret config) and agentTokenSecretArn. */
export function readAgentTokenSource(raw: Raw, requireSecrets: boolean, p: Problems): AgentTokenSource {
    const arn = asString(raw.agentTokenSecretArn, "agentTokenSecretArn", p);
    const jsonKey = asString(raw.agentTokenSecretKey, "agentTokenSecretKey", p);
    const intervalMinutes = intOrDefault(raw, "tokenSyncInterval", p);
    if (arn !== undefined) {
        if (!SECRET_ARN.test(arn)) {
            p.add(
                "agentTokenSecretArn",
                `${JSON.stringify(arn)} is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>); copy it from aws secretsmanager describe-secret --secret-id <name>`,
            );
        }
        if (isSet(raw.agentToken)) {
            p.add(
                "agentToken",
                `and scaledkite:agentTokenSecretArn are both set: keep one (pulumi config rm scaledkite:agentToken to take the token from Secrets Manager)`,
            );
        }
        return { kind: "secretsManager", arn, jsonKey, intervalMinutes };
    }
    if (jsonKey !== undefined)
        p.add(
            "agentTokenSecretKey",
            `is set without scaledkite:agentTokenSecretArn: set the secret's ARN too, or remove the key`,
        );
    if (setOtherThanDefault(raw, "tokenSyncInterval"))
        p.add(
            "tokenSyncInterval",
            `is set without scaledkite:agentTokenSecretArn: it only applies to a token from Secrets Manager`,
        );
    if (requireSecrets && !isSet(raw.agentToken)) {
        p.add(
            "agentToken",
            `is required: the Buildkite agent token (pulumi config set --secret scaledkite:agentToken <token>), or its AWS Secrets Manager secret (pulumi config set scaledkite:agentTokenSecretArn <arn>)`,
        );
    }
    return { kind: "config" };
}
