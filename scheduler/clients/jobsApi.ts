/**
 * The Lambdas' Kubernetes client: the calls they make (create a Job; delete one whose Buildkite job
 * finished before it started; the sweep reads the agent token Secret) over a keep-alive HTTPS
 * connection that trusts the cluster CA, with a bearer token.
 *
 * Why not @kubernetes/client-node here (the CLI and the tests use it): measured on this project,
 * loading it added about 1.1 s to every Lambda cold start, 11.5 MB to the zipped package and over
 * 300 MB of memory during a burst, and it opens a new TLS connection per request. This file is
 * node:https only; `npm run bench` shows the figures.
 */
import * as https from "https";
import type { CoreV1Event, V1Job, V1Pod, V1PodSpec } from "@kubernetes/client-node";
import { classifyApiFailure, classifyNetworkFailure, kubernetesError } from "../core/errors";

/** How long one create may take before it counts as a (retryable) network failure. */
/** The longest any one API call may take, start to end (not only between bytes). */
export const REQUEST_TIMEOUT_MS = 10_000;

export interface JobsApi {
    /** Creates the Job; resolves with the HTTP status (201, or 409 when it exists). Throws KubernetesError. */
    create(job: V1Job, token: string): Promise<{ status: number; body: { reason?: string; message?: string } }>;
    /** Deletes a Job and its pods; resolves with 200/202, or 404 when there was none. Throws KubernetesError. */
    remove(
        namespace: string,
        name: string,
        token: string,
    ): Promise<{ status: number; body: { reason?: string; message?: string } }>;
    /** Lists the pods matching a label selector (the sweep looks for workers that will never run). */
    listPods(namespace: string, labelSelector: string, token: string): Promise<V1Pod[]>;
    /** The worker Jobs matching a label selector (the sweep: Jobs that never got a pod). */
    listJobs(namespace: string, labelSelector: string, token: string): Promise<V1Job[]>;
    /** The events about objects of one kind (the kubelet's about pods, the Job controller's about Jobs). Throws KubernetesError. */
    listEvents(namespace: string, kind: "Pod" | "Job", token: string): Promise<CoreV1Event[]>;
    /** Reads one key of a Secret (the sweep's agent token). Throws KubernetesError. */
    secretValue(namespace: string, name: string, key: string, token: string): Promise<string>;
    /** A PodTemplate's pod spec; undefined when there is none of that name. Throws KubernetesError. */
    podTemplate(namespace: string, name: string, token: string): Promise<V1PodSpec | undefined>;
    /** A Secret's data, decoded (the token sync compares before it writes). Throws KubernetesError. */
    readSecret(namespace: string, name: string, token: string): Promise<{ data: Record<string, string> }>;
    /** Merge-patches a Secret's data (plain values, encoded here) and annotations. Throws KubernetesError. */
    patchSecret(
        namespace: string,
        name: string,
        patch: { data: Record<string, string>; annotations?: Record<string, string> },
        token: string,
    ): Promise<void>;
    readonly server: string;
}

/** The path of a namespaced collection: `resource` is a core/v1 resource or `group/version/resource`. Pure. */
export function collectionPath(namespace: string, resource: string): string {
    const [group, version, name] = resource.includes("/") ? resource.split("/") : ["", "v1", resource];
    return `/${group ? `apis/${group}` : "api"}/${version}/namespaces/${encodeURIComponent(namespace)}/${name}`;
}

/**
 * A JobsApi for one API server. `caData` is the base64 PEM EKS reports (undefined: the system CAs).
 * One keep-alive agent per container: after the first event, creating a Job reuses the connection.
 * Every call ends within REQUEST_TIMEOUT_MS, and before `deadline()` (epoch ms: the Lambda sets it
 * from its remaining time), so a server that trickles bytes cannot hold a call until Lambda kills
 * the function with no log line: the call fails, retryably, with a message that says so.
 */
export function jobsApi(server: string, caData: string | undefined, deadline: () => number = () => Infinity): JobsApi {
    const url = new URL(server);
    if (url.protocol !== "https:") throw new Error(`the cluster endpoint must be https, got ${server}`);
    const agent = new https.Agent({
        keepAlive: true,
        ca: caData ? Buffer.from(caData, "base64").toString() : undefined,
        maxSockets: 64,
    });
    const basePath = url.pathname.replace(/\/$/, "");
    const secretPath = (namespace: string, name: string) =>
        `${basePath}/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`;
    const jobsPath = (namespace: string) =>
        `${basePath}/apis/batch/v1/namespaces/${encodeURIComponent(namespace)}/jobs`;
    type Body = { reason?: string; message?: string };

    function call(
        method: string,
        path: string,
        payload: string,
        token: string,
        what: string,
        ok: (status: number, body: Body) => boolean,
        contentType = "application/json",
    ): Promise<{ status: number; body: Body }> {
        const left = deadline() - Date.now();
        const budget = Math.min(REQUEST_TIMEOUT_MS, left);
        const late = () =>
            kubernetesError(
                left < REQUEST_TIMEOUT_MS
                    ? `${what}: no answer from the Kubernetes API ${server} before this invocation's deadline (${Math.max(0, Math.round(left))} ms were left of the Lambda's timeout)`
                    : `${what}: no complete answer from the Kubernetes API ${server} in ${REQUEST_TIMEOUT_MS} ms`,
                true,
            );
        if (budget <= 0) return Promise.reject(late());
        return new Promise((settle, fail) => {
            // The first outcome wins: an answer, a transport error, or the deadline.
            let settled = false;
            let timer: NodeJS.Timeout | undefined;
            const once =
                <A extends unknown[]>(f: (...a: A) => void) =>
                (...a: A) => {
                    if (settled) return;
                    settled = true;
                    clearTimeout(timer);
                    f(...a);
                };
            const resolve = once(settle);
            const reject = once(fail);
            const req = https.request(
                {
                    agent,
                    host: url.hostname,
                    port: url.port || 443,
                    method,
                    path,
                    headers: {
                        authorization: `Bearer ${token}`,
                        "content-type": contentType,
                        accept: "application/json",
                        "content-length": Buffer.byteLength(payload),
                        "user-agent": "scaledkite-scheduler",
                    },
                },
                (res) => {
                    const chunks: Buffer[] = [];
                    res.on("data", (c: Buffer) => chunks.push(c));
                    res.on("end", () => {
                        const status = res.statusCode ?? 0;
                        const text = Buffer.concat(chunks).toString();
                        let body: Body;
                        try {
                            body = JSON.parse(text || "{}");
                        } catch {
                            body = { message: text.slice(0, 200) };
                        }
                        if (ok(status, body)) resolve({ status, body });
                        else reject(classifyApiFailure(status, body, what));
                    });
                    res.on("error", (e) => reject(classifyNetworkFailure(e, what, server)));
                },
            );
            req.on("error", (e) => reject(classifyNetworkFailure(e, what, server)));
            timer = setTimeout(() => {
                reject(late());
                req.destroy();
            }, budget);
            req.end(payload);
        });
    }

    async function readSecret(namespace: string, name: string, token: string) {
        const { body } = await call(
            "GET",
            secretPath(namespace, name),
            "",
            token,
            `reading Secret ${namespace}/${name}`,
            (status) => status === 200,
        );
        const secret = body as { data?: Record<string, string> };
        return {
            data: Object.fromEntries(
                Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]),
            ),
        };
    }

    /** Every item of a namespaced list (`resource` under core/v1, or `group/version/resource`), page by page. */
    async function list<T>(
        namespace: string,
        resource: string,
        selector: Record<string, string>,
        token: string,
        what: string,
    ): Promise<T[]> {
        const q = new URLSearchParams({ ...selector, limit: "500" });
        const items: T[] = [];
        let cont: string | undefined;
        do {
            if (cont) q.set("continue", cont);
            const { body } = await call(
                "GET",
                `${basePath}${collectionPath(namespace, resource)}?${q}`,
                "",
                token,
                what,
                (status) => status === 200,
            );
            const page = body as { items?: T[]; metadata?: { continue?: string } };
            items.push(...(page.items ?? []));
            cont = page.metadata?.continue || undefined;
        } while (cont);
        return items;
    }

    return {
        server,
        create(job: V1Job, token: string) {
            const namespace = job.metadata!.namespace!;
            return call(
                "POST",
                `${jobsPath(namespace)}`,
                JSON.stringify(job),
                token,
                `creating Job ${namespace}/${job.metadata!.name}`,
                (status, body) =>
                    status === 201 ||
                    status === 200 ||
                    status === 202 ||
                    (status === 409 && body.reason === "AlreadyExists"),
            );
        },
        async podTemplate(namespace: string, name: string, token: string) {
            const { status, body } = await call(
                "GET",
                `${basePath}/api/v1/namespaces/${encodeURIComponent(namespace)}/podtemplates/${encodeURIComponent(name)}`,
                "",
                token,
                `reading PodTemplate ${namespace}/${name}`,
                (status) => status === 200 || status === 404,
            );
            return status === 404
                ? undefined
                : ((body as { template?: { spec?: V1PodSpec } }).template?.spec ?? { containers: [] });
        },
        listPods(namespace: string, labelSelector: string, token: string) {
            return list<V1Pod>(namespace, "pods", { labelSelector }, token, `listing worker pods in ${namespace}`);
        },
        listJobs(namespace: string, labelSelector: string, token: string) {
            return list<V1Job>(
                namespace,
                "batch/v1/jobs",
                { labelSelector },
                token,
                `listing worker Jobs in ${namespace}`,
            );
        },
        listEvents(namespace: string, kind: "Pod" | "Job", token: string) {
            return list<CoreV1Event>(
                namespace,
                "events",
                { fieldSelector: `involvedObject.kind=${kind}` },
                token,
                `listing ${kind.toLowerCase()} events in ${namespace}`,
            );
        },
        async secretValue(namespace: string, name: string, key: string, token: string) {
            const value = (await readSecret(namespace, name, token)).data[key];
            if (value === undefined)
                throw classifyApiFailure(
                    404,
                    { message: `Secret ${namespace}/${name} has no key ${key}` },
                    `reading Secret ${namespace}/${name}`,
                );
            return value;
        },
        readSecret,
        async patchSecret(
            namespace: string,
            name: string,
            patch: { data: Record<string, string>; annotations?: Record<string, string> },
            token: string,
        ) {
            const data = Object.fromEntries(
                Object.entries(patch.data).map(([k, v]) => [k, Buffer.from(v).toString("base64")]),
            );
            const body = JSON.stringify({
                metadata: patch.annotations ? { annotations: patch.annotations } : undefined,
                data,
            });
            await call(
                "PATCH",
                `${secretPath(namespace, name)}?fieldManager=scaledkite-token-sync`,
                body,
                token,
                `updating Secret ${namespace}/${name}`,
                (status) => status === 200,
                "application/merge-patch+json",
            );
        },
        remove(namespace: string, name: string, token: string) {
            // Background propagation: the garbage collector removes the pod.
            return call(
                "DELETE",
                `${jobsPath(namespace)}/${encodeURIComponent(name)}`,
                JSON.stringify({ propagationPolicy: "Background" }),
                token,
                `deleting Job ${namespace}/${name}`,
                (status) => status === 200 || status === 202 || status === 404,
            );
        },
    };
}
