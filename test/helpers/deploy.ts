/**
 * Puts what the Pulumi program declares for Kubernetes (read from the mocks) into the real local
 * API server, and gives the scheduler's view of the same stack.
 */
import type * as K8s from "@kubernetes/client-node";
import * as fs from "fs";
import {
    LOCAL_CLUSTER_NAME,
    LOCAL_REGION,
    localJobClient,
    type LocalIdentity,
    SCHEDULER_IDENTITY,
} from "../../k8s/local/awsIdentities";
import { signEksToken } from "../../scheduler/clients/eksToken";
import { type JobClient } from "../../scheduler/clients/kube";
import { parseStackConfig, schedulerSettings } from "../../scheduler/config/config";
import { type SchedulerSettings } from "../../scheduler/core/settings";
import { type ClusterState } from "../../k8s/local/cluster";
import { LOCAL_IMAGES } from "../../k8s/local/node";
import { STAND_IN_SCHEDULING } from "../../k8s/local/podRunner";
import { replaceExisting } from "../../k8s/local/stack";
import { adminConfig, k8sClient } from "./localCluster";
import { baseConfig, type DeclaredResource, runProgram, type ProgramRun } from "./pulumiProgram";

/** apiVersion and kind of a Pulumi Kubernetes resource type, e.g. kubernetes:core/v1:Secret. */
export function apiVersionKind(type: string): { apiVersion: string; kind: string } {
    const m = /^kubernetes:([^:]+):(\w+)$/.exec(type);
    if (!m) throw new Error(`not a Kubernetes resource type: ${type}`);
    const apiVersion = m[1].startsWith("core/") ? m[1].slice("core/".length) : m[1];
    return { apiVersion, kind: m[2] };
}

/** Pulumi's marker for a secret value in mock inputs. */
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

/** Unwraps secret values, as the Kubernetes provider does before it sends an object. */
export function unwrapSecrets(v: unknown): unknown {
    if (Array.isArray(v)) return v.map(unwrapSecrets);
    if (typeof v !== "object" || v === null) return v;
    const o = v as Record<string, unknown>;
    if (o[SECRET_SIG] !== undefined && "value" in o) return unwrapSecrets(o.value);
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, unwrapSecrets(x)]));
}

/** The manifests of the Kubernetes resources the program declares, in declaration order. */
export function kubernetesObjects(run: ProgramRun): K8s.KubernetesObject[] {
    return run.resources
        .filter((r: DeclaredResource) => r.type.startsWith("kubernetes:") && !r.type.startsWith("kubernetes:index"))
        .map((r) => ({ ...apiVersionKind(r.type), ...(unwrapSecrets(r.inputs) as object) }));
}

export interface DeployedStack {
    run: ProgramRun;
    settings: SchedulerSettings;
    namespace: string;
    config: Record<string, string>;
}

/** Program config for the local cluster, as full keys (an `extra` value of null removes the key). */
export function localStackConfig(namespace: string, extra: Record<string, unknown> = {}): Record<string, string> {
    const config: Record<string, string> = {
        ...baseConfig(),
        "scaledkite:cluster": LOCAL_CLUSTER_NAME,
        "scaledkite:namespace": namespace,
        // Jobs get their queue's pod unless a test has its queues take it from the job.
        "scaledkite:stepShape": "none",
    };
    for (const [k, v] of Object.entries(extra)) {
        if (v === null) delete config[`scaledkite:${k}`];
        else config[`scaledkite:${k}`] = typeof v === "string" ? v : JSON.stringify(v);
    }
    return config;
}

/**
 * Where a stack's workers run: "real", the real node (real containers: the images must be the local
 * ones, LOCAL_WORKER_IMAGES), or "stand-in", the pod runner's node (no container runs; for tests that
 * need more pods than 2 cores can run, or node pools this machine has not: DEVELOPERS.md lists them).
 */
export type WorkerNode = "real" | "stand-in";

/** Stack config that points workers at the local node's images. */
export const LOCAL_WORKER_IMAGES = { image: LOCAL_IMAGES.agent, dindImage: LOCAL_IMAGES.dind };

/** `extra` with the stand-in node's nodeSelector and toleration added to the stack-wide ones. */
export function onStandInNode(extra: Record<string, unknown>): Record<string, unknown> {
    return {
        ...extra,
        nodeSelector: { ...STAND_IN_SCHEDULING.nodeSelector, ...(extra.nodeSelector as object | undefined) },
        tolerations: [...STAND_IN_SCHEDULING.tolerations, ...((extra.tolerations as object[] | undefined) ?? [])],
    };
}

/** Requests small enough that several workers fit the 2-core real node at once (unless a test sets its own). */
export const SMALL_WORKERS = {
    resources: {
        agent: { requests: { cpu: "10m", memory: "64Mi" } },
        command: { requests: { cpu: "10m", memory: "64Mi" } },
        dind: { requests: { cpu: "10m", memory: "64Mi" } },
    },
};

/**
 * Runs the program for `namespace` and applies its Kubernetes side to the local cluster. Workers go
 * to the real node unless `node` says otherwise (without a real node, to the stand-in node).
 */
export async function deployStack(
    state: ClusterState,
    namespace: string,
    extra: Record<string, unknown> = {},
    node: WorkerNode = "real",
): Promise<DeployedStack> {
    const where = state.node ? node : "stand-in";
    const config = localStackConfig(
        namespace,
        where === "stand-in" ? onStandInNode(extra) : { ...SMALL_WORKERS, ...extra },
    );
    const run = await runProgram(config, undefined, {
        endpoint: state.server,
        caData: fs.readFileSync(state.caFile).toString("base64"),
        region: LOCAL_REGION,
    });
    const client = k8sClient().KubernetesObjectApi.makeApiClient(adminConfig(state));
    for (const obj of kubernetesObjects(run)) {
        try {
            await client.create(obj);
        } catch (e) {
            if ((e as { code?: number }).code !== 409)
                throw new Error(
                    `applying ${obj.kind} ${obj.metadata?.name}: ${(e as Error).message.split("\n").slice(0, 3).join(" ")}`,
                    { cause: e },
                );
            // An update of what a previous run left (cluster-wide objects outlive the test namespaces).
            await replaceExisting(client, obj);
        }
    }
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(config)) raw[k.slice("scaledkite:".length)] = v;
    return { run, settings: schedulerSettings(parseStackConfig(raw)), namespace, config };
}

/** Deletes a test namespace (and so everything in it). */
export async function deleteNamespace(state: ClusterState, namespace: string): Promise<void> {
    const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
    try {
        await core.deleteNamespace({ name: namespace });
    } catch {
        /* already gone */
    }
}

/** A JobClient that authenticates as the Lambda does in AWS: an EKS token for a (local) IAM identity. */
export function creatorAs(state: ClusterState, identity: LocalIdentity = SCHEDULER_IDENTITY): JobClient {
    return localJobClient(state.server, state.caFile, identity);
}

/** A KubeConfig that authenticates as `identity` with an EKS token. */
export async function kubeConfigAs(state: ClusterState, identity: LocalIdentity): Promise<K8s.KubeConfig> {
    const token = (await signEksToken(LOCAL_CLUSTER_NAME, LOCAL_REGION, identity)).token;
    const kc = new (k8sClient().KubeConfig)();
    kc.loadFromOptions({
        clusters: [{ name: "local", server: state.server, caData: fs.readFileSync(state.caFile).toString("base64") }],
        users: [{ name: "u", token }],
        contexts: [{ name: "c", cluster: "local", user: "u" }],
        currentContext: "c",
    });
    return kc;
}
