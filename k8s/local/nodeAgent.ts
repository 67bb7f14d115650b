/**
 * The local cluster's "node" process: the pod runner, and the authentication webhook that verifies
 * EKS-style tokens for kube-apiserver. Started and stopped by `npm run local-cluster`.
 *
 * With a real node, also the registry mirror containerd pulls the node's own images through.
 *
 *   node nodeAgent.ts <admin kubeconfig> <webhook port> [<mirror port> <images dir>...]
 */
import * as http from "http";
import { LOCAL_IDENTITIES, reviewToken } from "./awsIdentities";
import { runPods } from "./podRunner";
import { LOCAL_IMAGES, STOCK_AGENT_IMAGE } from "./node";
import { startRegistryMirror } from "./registryMirror";

function serveWebhook(port: number): Promise<http.Server> {
    const server = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
            void (async () => {
                let answer: object;
                try {
                    answer = await reviewToken(JSON.parse(Buffer.concat(chunks).toString() || "{}"), LOCAL_IDENTITIES);
                } catch (e) {
                    answer = {
                        apiVersion: "authentication.k8s.io/v1",
                        kind: "TokenReview",
                        status: { authenticated: false, error: (e as Error).message },
                    };
                }
                res.writeHead(200, { "content-type": "application/json" });
                res.end(JSON.stringify(answer));
            })();
        });
    });
    // kube-apiserver keeps idle connections for 90 s; a server that closes them sooner races with its
    // next request (EOF, and the request is refused as unauthenticated).
    server.keepAliveTimeout = 0;
    server.headersTimeout = 0;
    return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => resolve(server));
    });
}

async function main(): Promise<void> {
    const [kubeconfig, port, mirrorPort, ...imagesDirs] = process.argv.slice(2);
    const webhook = await serveWebhook(Number(port));
    const mirror = mirrorPort
        ? await startRegistryMirror(imagesDirs, Number(mirrorPort), { [LOCAL_IMAGES.agent]: [STOCK_AGENT_IMAGE] })
        : undefined;
    const k8s: typeof import("@kubernetes/client-node") = require("@kubernetes/client-node");
    const kc = new k8s.KubeConfig();
    // The webhook serves from the start (the API server needs it); the runner waits for the
    // API server, whose kubeconfig is written once it is ready.
    for (let i = 0; ; i++) {
        try {
            kc.loadFromFile(kubeconfig);
            await kc.makeApiClient(k8s.CoreV1Api).listNamespace({ limit: 1 });
            break;
        } catch (e) {
            if (i > 600) throw e;
            await new Promise((r) => setTimeout(r, 100));
        }
    }
    const runner = await runPods(kc, (s) => console.log(`${new Date().toISOString()} ${s}`));
    const stop = () => {
        runner.stop();
        webhook.close();
        void mirror?.close();
        process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    console.log(
        `${new Date().toISOString()} node agent ready (webhook on 127.0.0.1:${port}${mirror ? `; registry mirror ${mirror.url} for ${mirror.names.join(", ")}` : ""})`,
    );
}

main().catch((e) => {
    console.error(`node agent failed: ${(e as Error).message}`);
    process.exit(1);
});
