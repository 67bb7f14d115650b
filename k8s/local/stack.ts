/**
 * What a stack's `pulumi up` creates in the cluster, for the local cluster: its namespace, the
 * Secrets workers read (placeholder values, unless given), the hooks ConfigMaps, the workers'
 * service account, and the scheduler's Role and RoleBinding. Used by `npm run local-cluster -- up
 * --stack NAME` and by the demo. Creating twice leaves what exists as it is; `replaceSecrets`
 * updates the Secrets' values.
 */
import type * as K8s from "@kubernetes/client-node";
import * as fs from "fs";
import * as path from "path";
import { readStackFile } from "../../scheduler/cli/inputs";
import { parseStackConfig, readsJobs } from "../../scheduler/config/config";
import { ecrHookFiles } from "../ecrLogin";
import { SCHEDULER_GROUP, schedulerRbac } from "../rbac";
import { metadataNetworkPolicy, podSecurityLabels, workerJobPolicy, workerShape } from "../workerPolicy";
import { PROJECT_ROOT } from "./cluster";
import {
    AGENT_TOKEN_KEY,
    ECR_HOOKS_CONFIGMAP,
    GIT_CREDENTIALS_KEY,
    HOOKS_CONFIGMAP,
    SECRET_NAMES,
    WORKER_SERVICE_ACCOUNT,
} from "../../scheduler/core/names";
import { type StackConfig } from "../../scheduler/config/types";

/** The stack file `Pulumi.<name>.yaml` of the project, parsed and checked (secrets may be unset). */
export function loadStack(name: string): StackConfig {
    const file = path.join(PROJECT_ROOT, `Pulumi.${name}.yaml`);
    if (!fs.existsSync(file))
        throw new Error(
            `no stack file ${path.relative(PROJECT_ROOT, file)}: name a stack of this project (e.g. --stack dev)`,
        );
    return parseStackConfig(readStackFile(file), { requireSecrets: false });
}

export interface SecretValues {
    agentToken?: string;
    env?: Record<string, string>;
    gitCredentials?: string;
}

/** The stack's Kubernetes objects, with placeholder Secret values where none are given. */
export function stackObjects(config: StackConfig, values: SecretValues = {}): object[] {
    const ns = config.namespace;
    const secret = (name: string, data: Record<string, string>) => ({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name, namespace: ns },
        stringData: data,
    });
    return [
        { apiVersion: "v1", kind: "Namespace", metadata: { name: ns, labels: podSecurityLabels(config.queues) } },
        secret(SECRET_NAMES.agentToken, { [AGENT_TOKEN_KEY]: values.agentToken ?? "local-placeholder-agent-token" }),
        secret(SECRET_NAMES.env, values.env ?? { EXAMPLE: "local-placeholder" }),
        secret(SECRET_NAMES.gitCredentials, {
            [GIT_CREDENTIALS_KEY]: values.gitCredentials ?? "https://local:placeholder@git.example.invalid",
        }),
        ...(Object.keys(config.hooks).length
            ? [
                  {
                      apiVersion: "v1",
                      kind: "ConfigMap",
                      metadata: { name: HOOKS_CONFIGMAP, namespace: ns },
                      data: config.hooks,
                  },
              ]
            : []),
        ...(config.ecr
            ? [
                  {
                      apiVersion: "v1",
                      kind: "ServiceAccount",
                      metadata: { name: WORKER_SERVICE_ACCOUNT, namespace: ns },
                      automountServiceAccountToken: false,
                  },
                  {
                      apiVersion: "v1",
                      kind: "ConfigMap",
                      metadata: { name: ECR_HOOKS_CONFIGMAP, namespace: ns },
                      data: ecrHookFiles(config.ecr.registries),
                  },
              ]
            : []),
        metadataNetworkPolicy(ns),
        ...schedulerRbac(
            ns,
            SCHEDULER_GROUP,
            readsJobs(config) ? { agentTokenSecret: SECRET_NAMES.agentToken } : undefined,
        ),
        ...workerJobPolicy(
            ns,
            [SCHEDULER_GROUP],
            workerShape(config.queues, config.ecr ? WORKER_SERVICE_ACCOUNT : undefined),
        ),
    ];
}

/** Replaces an object that exists with `obj`, at the existing one's resourceVersion (some kinds refuse an update without it). */
export async function replaceExisting(client: K8s.KubernetesObjectApi, obj: K8s.KubernetesObject): Promise<void> {
    const existing = await client.read({
        apiVersion: obj.apiVersion!,
        kind: obj.kind!,
        metadata: { name: obj.metadata!.name!, namespace: obj.metadata?.namespace },
    });
    await client.replace({
        ...obj,
        metadata: { ...obj.metadata, resourceVersion: existing.metadata?.resourceVersion },
    });
}

/**
 * Creates the stack's objects; what exists is kept, except Secrets, whose values are replaced, and the
 * admission policy, which follows the stack's images (it is cluster-wide, so it outlives a namespace).
 */
export async function applyStack(
    kc: K8s.KubeConfig,
    config: StackConfig,
    values: SecretValues = {},
): Promise<string[]> {
    const k8s: typeof K8s = require("@kubernetes/client-node");
    const client = k8s.KubernetesObjectApi.makeApiClient(kc);
    const made: string[] = [];
    let replacedPolicy = false;
    for (const obj of stackObjects(config, values) as K8s.KubernetesObject[]) {
        try {
            await client.create(obj);
            made.push(`${obj.kind} ${obj.metadata?.name}`);
        } catch (e) {
            if ((e as { code?: number }).code !== 409)
                throw new Error(`creating ${obj.kind} ${obj.metadata?.name}: ${(e as Error).message.split("\n")[0]}`, {
                    cause: e,
                });
            if (obj.kind === "Secret" || obj.kind?.startsWith("ValidatingAdmissionPolicy")) {
                await replaceExisting(client, obj);
                if (obj.kind !== "Secret") replacedPolicy = true;
            }
        }
    }
    // The API server swaps in a changed admission policy a moment later (its policy informer), so the
    // first Jobs are not judged by the old one.
    if (replacedPolicy) await new Promise((r) => setTimeout(r, 2_000));
    return made;
}
