/**
 * The Kubernetes adapter: creates worker Jobs with @kubernetes/client-node, either for an EKS cluster
 * (endpoint + CA + an EKS token signed from the Lambda's own credentials) or for any kubeconfig.
 *
 * `@kubernetes/client-node` is loaded with `require` inside the functions that need it, so the Lambda
 * code Pulumi serializes loads it from its package at run time, once per container.
 */
import type * as K8s from "@kubernetes/client-node";
import type { V1Job } from "@kubernetes/client-node";
import { classifyApiFailure, classifyNetworkFailure, isKubernetesError, kubernetesError, KubernetesError } from "./errors";
import { credentialsFromEnv, signEksToken, TokenCache } from "./eksToken";

/** What the event handler needs from Kubernetes. */
export interface JobCreator {
    /** Creates the Job. "exists" when a Job of that name is already there. Throws KubernetesError. */
    createJob(job: V1Job): Promise<"created" | "exists">;
    /** Where the Jobs go, for messages. */
    readonly server: string;
}

function loadClient(): typeof K8s {
    return require("@kubernetes/client-node");
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

/** Turns whatever a create call threw into a classified KubernetesError. */
export function toKubernetesError(err: unknown, what: string, server: string): KubernetesError {
    if (isKubernetesError(err)) return err;
    const code = (err as { code?: unknown })?.code;
    if (typeof code === "number") return classifyApiFailure(code, statusBody((err as { body?: unknown }).body), what);
    return classifyNetworkFailure(err, what, server);
}

/** A JobCreator on a BatchV1Api obtained from `api()` (which may change, e.g. when a token is renewed). */
function creatorFor(api: () => Promise<K8s.BatchV1Api>, server: string, onUnauthorized: () => void = () => {}): JobCreator {
    return {
        server,
        async createJob(job: V1Job) {
            const namespace = job.metadata!.namespace!;
            const what = `creating Job ${namespace}/${job.metadata!.name}`;
            try {
                await (await api()).createNamespacedJob({ namespace, body: job });
                return "created";
            } catch (err) {
                const e = toKubernetesError(err, what, server);
                if (e.status === 409 && e.reason === "AlreadyExists") return "exists";
                if (e.status === 401) onUnauthorized();
                throw e;
            }
        },
    };
}

/** A JobCreator for the cluster and user of a kubeconfig (CLI, tests, local cluster). */
export function kubeconfigJobCreator(kubeconfig?: string): JobCreator {
    const k8s = loadClient();
    const kc = new k8s.KubeConfig();
    if (kubeconfig) kc.loadFromFile(kubeconfig);
    else kc.loadFromDefault();
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw kubernetesError(`the kubeconfig has no current cluster; pass --kubeconfig or set KUBECONFIG`, false);
    const api = kc.makeApiClient(k8s.BatchV1Api);
    return creatorFor(async () => api, cluster.server);
}

/** Where an EKS cluster is and how to reach it. Read once at deploy time, never per event. */
export interface EksClusterAccess {
    name: string;
    region: string;
    endpoint: string;
    /** Base64 PEM of the cluster CA, as EKS reports it. */
    caData: string;
}

/** A bearer-token JobCreator for any API server: the token comes from `token()` and is renewed on 401. */
export function bearerJobCreator(server: string, caData: string | undefined, tokens: TokenCache, opts: { skipTLSVerify?: boolean } = {}): JobCreator {
    const k8s = loadClient();
    let cached: { token: string; api: K8s.BatchV1Api } | undefined;
    const api = async () => {
        const token = await tokens.get();
        if (cached?.token !== token) {
            const kc = new k8s.KubeConfig();
            kc.loadFromOptions({
                clusters: [{ name: "cluster", server, caData, skipTLSVerify: opts.skipTLSVerify ?? false }],
                users: [{ name: "scheduler", token }],
                contexts: [{ name: "scheduler", cluster: "cluster", user: "scheduler" }],
                currentContext: "scheduler",
            });
            cached = { token, api: kc.makeApiClient(k8s.BatchV1Api) };
        }
        return cached.api;
    };
    return creatorFor(api, server, () => tokens.invalidate());
}

/** The Lambda's JobCreator: EKS tokens signed from the function's own IAM role, cached for 14 minutes. */
export function eksJobCreator(cluster: EksClusterAccess): JobCreator {
    const tokens = new TokenCache(() => signEksToken(cluster.name, cluster.region, credentialsFromEnv()));
    return bearerJobCreator(cluster.endpoint, cluster.caData, tokens);
}
