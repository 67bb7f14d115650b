/**
 * Ways to create worker Jobs (the JobClient the handler needs):
 * - for the Lambda: an EKS cluster's endpoint and CA, and EKS tokens signed from the function's own
 *   credentials, through the minimal keep-alive client of jobsApi.ts;
 * - for people (CLI) and tests: any kubeconfig, through @kubernetes/client-node, loaded with
 *   `require` only when asked for, so the Lambda never loads it.
 */
import type * as K8s from "@kubernetes/client-node";
import type { CoreV1Event, V1Job, V1Pod, V1PodSpec } from "@kubernetes/client-node";
import {
    classifyApiFailure,
    classifyNetworkFailure,
    isKubernetesError,
    kubernetesError,
    type KubernetesError,
} from "../core/errors";
import { AGENT_TOKEN_KEY, SECRET_NAMES } from "../core/names";
import { credentialsFromEnv, signEksToken, TokenCache } from "./eksToken";
import { jobsApi } from "./jobsApi";
import { collectionWatcher, type WatchEnd, type WatchEvent } from "./watch";

/** The label selector of every worker pod. */
export const WORKER_SELECTOR = "app.kubernetes.io/managed-by=scaledkite,app.kubernetes.io/component=buildkite-worker";

/** What the event handler needs from Kubernetes. */
export interface JobClient {
    /** Creates the Job. "exists" when a Job of that name is already there. Throws KubernetesError. */
    createJob(job: V1Job): Promise<"created" | "exists">;
    /** Deletes a Job and its pod. "absent" when there was none. Throws KubernetesError. */
    deleteJob(namespace: string, name: string): Promise<"deleted" | "absent">;
    /** The worker pods in a namespace (the sweep's view; optional for clients that only schedule). */
    listWorkerPods?(namespace: string): Promise<V1Pod[]>;
    /** The worker Jobs in a namespace (the sweep: Jobs that never got a pod). */
    listWorkerJobs?(namespace: string): Promise<V1Job[]>;
    /** The events about pods (the kubelet's: pull attempts) or Jobs (the Job controller's: refused pods) in a namespace. */
    listEvents?(namespace: string, kind: "Pod" | "Job"): Promise<CoreV1Event[]>;
    /** Lists and watches the worker pods or Jobs (`pods`, `batch/v1/jobs`): the sweep's watch. */
    workers?: WorkerWatch;
    /** A PodTemplate's pod spec (a step's `podTemplate`); undefined when there is none of that name. */
    readPodTemplate?(namespace: string, name: string): Promise<V1PodSpec | undefined>;
    /** Where the Jobs go, for messages. */
    readonly server: string;
}

/** The worker objects of a namespace, listed and watched (clients/watch.ts) with the client's token. */
export interface WorkerWatch {
    list<T>(namespace: string, resource: string): Promise<{ items: T[]; resourceVersion: string }>;
    watch<T>(
        namespace: string,
        resource: string,
        resourceVersion: string,
        onEvent: (e: WatchEvent<T>) => void,
        until: number,
        signal?: AbortSignal,
    ): Promise<WatchEnd>;
}

/** Calls made with the cached token; a refused token (401) is dropped so the next call signs a new one. */
function bearerCalls(tokens: TokenCache): <T>(call: (token: string) => Promise<T>) => Promise<T> {
    return async (call) => {
        try {
            return await call(await tokens.get());
        } catch (e) {
            if ((e as KubernetesError).status === 401) tokens.invalidate();
            throw e;
        }
    };
}

/**
 * A JobClient for any API server that takes bearer tokens: one request per Job, one keep-alive
 * connection per container; a refused token is dropped so the next attempt signs a new one.
 */
export function bearerJobClient(
    server: string,
    caData: string | undefined,
    tokens: TokenCache,
    deadline?: () => number,
): JobClient {
    const api = jobsApi(server, caData, deadline);
    const watcher = collectionWatcher(server, caData);
    const withToken = bearerCalls(tokens);
    return {
        server,
        async createJob(job: V1Job) {
            const { status } = await withToken((t) => api.create(job, t));
            return status === 409 ? "exists" : "created";
        },
        async deleteJob(namespace: string, name: string) {
            const { status } = await withToken((t) => api.remove(namespace, name, t));
            return status === 404 ? "absent" : "deleted";
        },
        listWorkerPods(namespace: string) {
            return withToken((t) => api.listPods(namespace, WORKER_SELECTOR, t));
        },
        readPodTemplate(namespace: string, name: string) {
            return withToken((t) => api.podTemplate(namespace, name, t));
        },
        listWorkerJobs(namespace: string) {
            return withToken((t) => api.listJobs(namespace, WORKER_SELECTOR, t));
        },
        listEvents(namespace: string, kind: "Pod" | "Job") {
            return withToken((t) => api.listEvents(namespace, kind, t));
        },
        workers: {
            list: (namespace, resource) => withToken((t) => watcher.list(namespace, resource, WORKER_SELECTOR, t)),
            watch: (namespace, resource, rv, onEvent, until, signal) =>
                withToken((t) => watcher.watch(namespace, resource, WORKER_SELECTOR, rv, t, onEvent, until, signal)),
        },
    };
}

/** Where an EKS cluster is and how to reach it. Read once at deploy time, never per event. */
export interface EksClusterAccess {
    name: string;
    region: string;
    endpoint: string;
    /** Base64 PEM of the cluster CA, as EKS reports it. */
    caData: string;
}

/** EKS tokens signed from the function's own IAM role, cached for 14 minutes. */
export function eksTokens(cluster: EksClusterAccess): TokenCache {
    return new TokenCache(() => signEksToken(cluster.name, cluster.region, credentialsFromEnv()));
}

/** The Lambda's JobClient; its calls end before `deadline()` (epoch ms, see invocationDeadline). */
export function eksJobClient(
    cluster: EksClusterAccess,
    tokens: TokenCache = eksTokens(cluster),
    deadline?: () => number,
): JobClient {
    return bearerJobClient(cluster.endpoint, cluster.caData, tokens, deadline);
}

/** Time kept back from the Lambda's remaining time, to log the failure and return it. */
export const DEADLINE_MARGIN_MS = 1_500;

/**
 * The deadline of the current invocation for the Lambda's calls: `start(context)` at the beginning of
 * each invocation sets it from `getRemainingTimeInMillis()`, less DEADLINE_MARGIN_MS.
 */
export function invocationDeadline(): {
    get: () => number;
    start: (context: { getRemainingTimeInMillis?: () => number } | undefined) => void;
} {
    let at = Infinity;
    return {
        get: () => at,
        start: (context) => {
            const left = context?.getRemainingTimeInMillis?.();
            at = left === undefined ? Infinity : Date.now() + left - DEADLINE_MARGIN_MS;
        },
    };
}

/**
 * Reads a Secret's value with a bearer token, cached for `ttlMs` (default: under a minute, so each
 * sweep of a warm container reads it once, and a rotated token is used from the next sweep on).
 * The sweep reads the agent token this way: it never passes through Pulumi state into the Lambda.
 */
export function bearerSecretReader(
    server: string,
    caData: string | undefined,
    tokens: TokenCache,
    namespace: string,
    name: string,
    key: string,
    ttlMs = 50_000,
): () => Promise<string> {
    const api = jobsApi(server, caData);
    const withToken = bearerCalls(tokens);
    let cached: { value: string; at: number } | undefined;
    return async () => {
        if (cached && Date.now() - cached.at < ttlMs) return cached.value;
        cached = { value: await withToken((t) => api.secretValue(namespace, name, key, t)), at: Date.now() };
        return cached.value;
    };
}

/** The workers' agent token, read from its Secret with the Lambda's EKS tokens (the sweep's and the scheduler's Stacks API calls). */
export function agentTokenReader(
    cluster: EksClusterAccess,
    tokens: TokenCache,
    namespace: string,
): () => Promise<string> {
    return bearerSecretReader(
        cluster.endpoint,
        cluster.caData,
        tokens,
        namespace,
        SECRET_NAMES.agentToken,
        AGENT_TOKEN_KEY,
    );
}

/** Annotations on the agent token Secret that say where its value came from, and when. */
export const TOKEN_SOURCE_ANNOTATIONS = {
    source: "scaledkite.io/token-source",
    version: "scaledkite.io/token-version",
    syncedAt: "scaledkite.io/token-synced-at",
} as const;

/** Where the token sync puts the token: the workers' agent token Secret. */
export interface TokenTarget {
    /** The token the Secret holds now (undefined before the first sync). */
    read(): Promise<string | undefined>;
    /** Writes the token, recording which secret version it came from. */
    write(token: string, source: { arn: string; versionId?: string }): Promise<void>;
    /** namespace/name, for messages. */
    readonly where: string;
}

/** The token sync's target: one key of one Secret, read and merge-patched with a bearer token. */
export function bearerTokenTarget(
    server: string,
    caData: string | undefined,
    tokens: TokenCache,
    namespace: string,
    name: string,
    key: string,
): TokenTarget {
    const api = jobsApi(server, caData);
    const withToken = bearerCalls(tokens);
    return {
        where: `${namespace}/${name}`,
        read: () => withToken(async (t) => (await api.readSecret(namespace, name, t)).data[key]),
        write: (value, from) =>
            withToken((t) =>
                api.patchSecret(
                    namespace,
                    name,
                    {
                        data: { [key]: value },
                        annotations: {
                            [TOKEN_SOURCE_ANNOTATIONS.source]: from.arn,
                            [TOKEN_SOURCE_ANNOTATIONS.version]: from.versionId ?? "",
                            [TOKEN_SOURCE_ANNOTATIONS.syncedAt]: new Date().toISOString(),
                        },
                    },
                    t,
                ),
            ),
    };
}

/** Reads the Status body an ApiException carries (client-node keeps it as text or as an object). */
function statusBody(body: unknown): { reason?: string; message?: string } | undefined {
    if (typeof body === "string") {
        try {
            return JSON.parse(body);
        } catch {
            return { message: body };
        }
    }
    return typeof body === "object" && body !== null ? (body as { reason?: string; message?: string }) : undefined;
}

/** Turns whatever a client-node call threw into a classified KubernetesError. */
export function toKubernetesError(err: unknown, what: string, server: string): KubernetesError {
    if (isKubernetesError(err)) return err;
    const code = (err as { code?: unknown })?.code;
    if (typeof code === "number") return classifyApiFailure(code, statusBody((err as { body?: unknown }).body), what);
    return classifyNetworkFailure(err, what, server);
}

/** A JobClient for the cluster and user of a kubeconfig (CLI, tests), through @kubernetes/client-node. */
export function kubeconfigJobClient(kubeconfig?: string): JobClient {
    const k8s: typeof K8s = require("@kubernetes/client-node");
    const kc = new k8s.KubeConfig();
    if (kubeconfig) kc.loadFromFile(kubeconfig);
    else kc.loadFromDefault();
    const cluster = kc.getCurrentCluster();
    if (!cluster)
        throw kubernetesError(`the kubeconfig has no current cluster; pass --kubeconfig or set KUBECONFIG`, false);
    const api = kc.makeApiClient(k8s.BatchV1Api);
    return {
        server: cluster.server,
        async createJob(job: V1Job) {
            const namespace = job.metadata!.namespace!;
            try {
                await api.createNamespacedJob({ namespace, body: job });
                return "created";
            } catch (err) {
                const e = toKubernetesError(err, `creating Job ${namespace}/${job.metadata!.name}`, cluster.server);
                if (e.status === 409 && e.reason === "AlreadyExists") return "exists";
                throw e;
            }
        },
        async deleteJob(namespace: string, name: string) {
            try {
                await api.deleteNamespacedJob({ name, namespace, propagationPolicy: "Background" });
                return "deleted";
            } catch (err) {
                const e = toKubernetesError(err, `deleting Job ${namespace}/${name}`, cluster.server);
                if (e.status === 404) return "absent";
                throw e;
            }
        },
    };
}
