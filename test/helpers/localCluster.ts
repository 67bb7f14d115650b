/**
 * The real control plane for integration tests: started once for the whole run (or reused when
 * `npm run local-cluster -- up` already runs one), stopped at the end if this run started it.
 *
 * SCALEDKITE_INTEGRATION: "required" (CI) fails when the cluster cannot start; "off" skips these
 * tests; unset runs them when the control plane binaries are cached and skips them otherwise.
 */
import type * as K8s from "@kubernetes/client-node";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { type ClusterState, down, status, up } from "../../k8s/local/cluster";

// The suite runs on the Lambda's major (Node 24): `npm test` uses the project's node_modules/.bin/node.
// Without it (npm ci --ignore-scripts skips the link) npm would fall back to the machine's node, silently.
if (Number(process.versions.node.split(".")[0]) < 24) {
    throw new Error(
        `the tests run on Node 24 (the Lambda's runtime) but this is Node ${process.version}: run them with npm test, after an npm ci that ran install scripts (the \`node\` package links node_modules/.bin/node)`,
    );
}

const mode = process.env.SCALEDKITE_INTEGRATION ?? "auto";
let started: Promise<ClusterState> | undefined;
let startedHere = false;

function binariesCached(): boolean {
    const dir =
        process.env.KUBEBUILDER_ASSETS ??
        path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "scaledkite", "controlplane");
    const walk = (d: string): boolean =>
        fs.existsSync(path.join(d, "kube-apiserver")) && fs.existsSync(path.join(d, "etcd"));
    if (walk(dir)) return true;
    return (
        fs.existsSync(dir) &&
        fs.readdirSync(dir).some((v) => /^v\d/.test(v) && !v.endsWith(".partial") && walk(path.join(dir, v)))
    );
}

/** Call in a describe block's `before`: skips the block when integration tests are off. */
export async function localCluster(ctx: Mocha.Context): Promise<ClusterState> {
    if (mode === "off" || (mode === "auto" && !status().running && !binariesCached())) {
        ctx.skip();
    }
    ctx.timeout(30 * 60_000);
    if (!started) {
        startedHere = !status().running;
        started = up(() => {});
    }
    return started;
}

/** localCluster for blocks whose workers run on the real node: skips them without one, or fails when integration is required. */
export async function localClusterWithNode(ctx: Mocha.Context): Promise<ClusterState> {
    const state = await localCluster(ctx);
    if (!state.node) {
        if (process.env.SCALEDKITE_INTEGRATION === "required")
            throw new Error("the local cluster runs no real node (SCALEDKITE_LOCAL_NODE=off?)");
        ctx.skip();
    }
    return state;
}

export function k8sClient(): typeof K8s {
    return require("@kubernetes/client-node");
}

/** An admin KubeConfig for the local cluster. */
export function adminConfig(state: ClusterState): K8s.KubeConfig {
    const kc = new (k8sClient().KubeConfig)();
    kc.loadFromFile(state.kubeconfig);
    return kc;
}

/** Polls `check` until it returns a value other than undefined. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
        try {
            const v = await check();
            if (v !== undefined) return v;
        } catch (e) {
            last = e;
        }
        await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(
        `timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message.split("\n")[0]})` : ""}`,
    );
}

export const mochaHooks = {
    async afterAll(this: Mocha.Context) {
        this.timeout(60_000);
        if (started && startedHere) await down(() => {});
    },
};
