/**
 * Lists and watches a namespaced collection over node:https with a bearer token (the sweep's view of
 * its workers): a list gives the items and the resourceVersion to watch from; a watch streams one
 * JSON event per line (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`) until its end time, and says
 * when the server no longer has that resourceVersion (410 Gone: list again). Kubernetes API concepts,
 * "Efficient detection of changes" (kubernetes.io/docs/reference/using-api/api-concepts).
 */
import type { ClientRequest } from "http";
import * as https from "https";
import { classifyApiFailure, classifyNetworkFailure, kubernetesError } from "../core/errors";
import { collectionPath, REQUEST_TIMEOUT_MS } from "./jobsApi";

export interface WatchEvent<T> {
    type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
    object: T;
}

/** What a watch ended with: the last resourceVersion seen, and whether the server had forgotten it. */
export interface WatchEnd {
    resourceVersion: string;
    gone: boolean;
}

/** Lists and watches, in a namespace, the objects of a resource (core/v1 or group/version/resource) that match a label selector. */
export interface CollectionWatcher {
    list<T>(
        namespace: string,
        resource: string,
        labelSelector: string,
        token: string,
    ): Promise<{ items: T[]; resourceVersion: string }>;
    /** Streams events to `onEvent` until `until` (epoch ms) or the server ends the watch. Throws classified errors. */
    watch<T>(
        namespace: string,
        resource: string,
        labelSelector: string,
        resourceVersion: string,
        token: string,
        onEvent: (e: WatchEvent<T>) => void,
        until: number,
        signal?: AbortSignal,
    ): Promise<WatchEnd>;
}

/** A watcher for one API server. */
export function collectionWatcher(server: string, caData: string | undefined): CollectionWatcher {
    const url = new URL(server);
    const agent = new https.Agent({
        keepAlive: true,
        ca: caData ? Buffer.from(caData, "base64").toString() : undefined,
    });
    const basePath = url.pathname.replace(/\/$/, "");

    /** One GET; `onLine` gets each line of the body as it arrives; resolves with the status when the body ends. */
    function get(
        path: string,
        token: string,
        what: string,
        onLine: (line: string) => void,
        timeoutMs: number,
        signal?: AbortSignal,
    ) {
        return new Promise<void>((resolve, reject) => {
            // Declared first: Pulumi's closure serializer refuses a variable used before its declaration.
            let req: ClientRequest | undefined;
            let timer: NodeJS.Timeout | undefined;
            const ended = { stop: () => {} };
            const finish = (error?: unknown) => {
                clearTimeout(timer);
                signal?.removeEventListener("abort", ended.stop);
                if (error) reject(error);
                else resolve();
            };
            // The end of the watch's time, or the caller's: not an error, the caller decides what comes next.
            const stop = () => {
                req?.destroy();
                finish();
            };
            ended.stop = stop;
            const safely = (line: string) => {
                try {
                    onLine(line);
                } catch (e) {
                    req?.destroy();
                    finish(kubernetesError(`${what}: the answer is not JSON (${(e as Error).message})`, true));
                }
            };
            req = https.request(
                {
                    agent,
                    host: url.hostname,
                    port: url.port || 443,
                    method: "GET",
                    path: `${basePath}${path}`,
                    headers: {
                        authorization: `Bearer ${token}`,
                        accept: "application/json",
                        "user-agent": "scaledkite-sweep",
                    },
                },
                (res) => {
                    let text = "";
                    const ok = res.statusCode === 200;
                    res.setEncoding("utf8");
                    res.on("data", (chunk: string) => {
                        text += chunk;
                        if (!ok) return;
                        let nl: number;
                        while ((nl = text.indexOf("\n")) >= 0) {
                            const line = text.slice(0, nl);
                            text = text.slice(nl + 1);
                            if (line.trim()) safely(line);
                        }
                    });
                    res.on("end", () => {
                        if (!ok) {
                            let body: { reason?: string; message?: string };
                            try {
                                body = JSON.parse(text || "{}");
                            } catch {
                                body = { message: text.slice(0, 200) };
                            }
                            return finish(classifyApiFailure(res.statusCode ?? 0, body, what));
                        }
                        if (text.trim()) safely(text);
                        finish();
                    });
                    res.on("error", (e) => finish(classifyNetworkFailure(e, what, server)));
                },
            );
            req.on("error", (e) => finish(classifyNetworkFailure(e, what, server)));
            timer = setTimeout(stop, timeoutMs);
            if (signal?.aborted) stop();
            signal?.addEventListener("abort", stop, { once: true });
            req.end();
        });
    }

    const path = (namespace: string, resource: string, labelSelector: string, extra: Record<string, string> = {}) =>
        `${collectionPath(namespace, resource)}?${new URLSearchParams({ labelSelector, ...extra })}`;

    return {
        async list<T>(namespace: string, resource: string, labelSelector: string, token: string) {
            let text = "";
            await get(
                path(namespace, resource, labelSelector),
                token,
                `listing ${resource} in ${namespace}`,
                (l) => (text += l),
                REQUEST_TIMEOUT_MS,
            );
            const body = JSON.parse(text) as { items?: T[]; metadata?: { resourceVersion?: string } };
            return { items: body.items ?? [], resourceVersion: body.metadata?.resourceVersion ?? "" };
        },
        async watch<T>(
            namespace: string,
            resource: string,
            labelSelector: string,
            resourceVersion: string,
            token: string,
            onEvent: (e: WatchEvent<T>) => void,
            until: number,
            signal?: AbortSignal,
        ) {
            const end: WatchEnd = { resourceVersion, gone: false };
            const left = Math.max(1, until - Date.now());
            const q = {
                watch: "1",
                resourceVersion,
                allowWatchBookmarks: "true",
                timeoutSeconds: String(Math.ceil(left / 1000)),
            };
            await get(
                path(namespace, resource, labelSelector, q),
                token,
                `watching ${resource} in ${namespace}`,
                (line) => {
                    const e = JSON.parse(line) as WatchEvent<T & { metadata?: { resourceVersion?: string } }>;
                    if (e.type === "ERROR") {
                        if ((e.object as { code?: number }).code === 410) end.gone = true;
                        return;
                    }
                    const rv = e.object?.metadata?.resourceVersion;
                    if (rv) end.resourceVersion = rv;
                    if (e.type !== "BOOKMARK") onEvent(e);
                },
                left,
                signal,
            );
            return end;
        },
    };
}
