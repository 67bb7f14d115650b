/**
 * A real Kubernetes cluster on this machine: etcd, kube-apiserver, kube-controller-manager and
 * kube-scheduler on loopback, a real node (containerd + kubelet, see node.ts) whose pods live on a
 * bridge of their own, and the node agent process (EKS-token webhook, and the stand-in pod runner's
 * node for tests that need more pods than 2 cores can run). Binaries are built once from source by
 * build-controlplane.sh and images by build-images.sh, both cached. State lives in `.local-cluster/`
 * of the project (git-ignored).
 *
 * SCALEDKITE_LOCAL_NODE=off starts no real node (only the stand-in pod runner's).
 */
import { execFileSync, spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import {
    claimNode,
    containerdArgs,
    containerdReady,
    importImages,
    nodeOwner,
    kubeletArgs,
    missingNodePrerequisites,
    NO_PULL_PROXY,
    NODE_NAME,
    setUpNetwork,
    stopNode,
    writeNodeConfig,
} from "./node";

export const PROJECT_ROOT = path.resolve(__dirname, "..", "..");
export const STATE_DIR = process.env.SCALEDKITE_LOCAL_DIR ?? path.join(PROJECT_ROOT, ".local-cluster");
export const KUBECONFIG = path.join(STATE_DIR, "kubeconfig");
const STATE_FILE = path.join(STATE_DIR, "state.json");
const ADMIN_TOKEN_FILE = path.join(STATE_DIR, "admin-token");

/**
 * The controllers the local cluster runs: what a worker Job's life needs, quota, and what a node
 * needs (node-lifecycle lifts the kubelet's not-ready taint; pods' projected token volumes wait for
 * the kube-root-ca.crt ConfigMap the publisher makes).
 */
export const CONTROLLERS = [
    "job-controller",
    "ttl-after-finished-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "namespace-controller",
    "resourcequota-controller",
    "pod-garbage-collector-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "root-ca-certificate-publisher-controller",
];

/** Whether `up` starts the real node (containerd + kubelet). */
export function realNodeWanted(): boolean {
    return process.env.SCALEDKITE_LOCAL_NODE !== "off";
}

interface ProcessInfo {
    name: string;
    pid: number;
    log: string;
}
export interface ClusterState {
    server: string;
    caFile: string;
    kubeconfig: string;
    processes: ProcessInfo[];
    binDir: string;
    startedAt: string;
    /** The real node's name, when one runs. */
    node?: string;
}

/** True when process `pid` runs. */
export function alive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
}

export function readState(): ClusterState | undefined {
    try {
        return JSON.parse(fs.readFileSync(STATE_FILE, "utf8"));
    } catch {
        return undefined;
    }
}

/** True when some process of the cluster whose state lives in `stateDir` still runs. */
function clusterRuns(stateDir: string): boolean {
    try {
        const state = JSON.parse(fs.readFileSync(path.join(stateDir, "state.json"), "utf8")) as ClusterState;
        return state.processes.some((p) => alive(p.pid));
    } catch {
        return false;
    }
}

/** Which of the cluster's processes run. */
export function status(): {
    running: boolean;
    state?: ClusterState;
    processes: { name: string; pid: number; alive: boolean }[];
} {
    const state = readState();
    if (!state) return { running: false, processes: [] };
    const processes = state.processes.map((p) => ({ name: p.name, pid: p.pid, alive: alive(p.pid) }));
    return { running: processes.length > 0 && processes.every((p) => p.alive), state, processes };
}

/** A TCP port nothing listens on, on `host`. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.once("error", reject);
        s.listen(0, host, () => {
            const port = (s.address() as net.AddressInfo).port;
            s.close(() => resolve(port));
        });
    });
}

/** "2m05s". */
function elapsed(ms: number): string {
    const s = Math.round(ms / 1000);
    return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

/**
 * Runs a cached build script; returns the last line it prints (its cache directory). Its own steps go
 * to stderr as they happen, and every PROGRESS_MS a line says how long the build has run against how
 * long a first build took when measured, so a first run never sits behind one silent line.
 */
function buildCached(script: string, what: string, firstBuild: string, log: (s: string) => void): Promise<string> {
    return new Promise((resolve, reject) => {
        const started = Date.now();
        const child = spawn("bash", [path.join(__dirname, script)], { stdio: ["ignore", "pipe", "inherit"] });
        let out = "";
        child.stdout.on("data", (c: Buffer) => (out += c.toString()));
        const ticker = setInterval(
            () => log(`${what}: building, ${elapsed(Date.now() - started)} so far (a first build: ${firstBuild})`),
            PROGRESS_MS,
        );
        child.on("error", (e) => {
            clearInterval(ticker);
            reject(e);
        });
        child.on("close", (code) => {
            clearInterval(ticker);
            if (code !== 0) return reject(new Error(`${what}: ${script} exited ${code} (its messages are above)`));
            if (Date.now() - started > PROGRESS_MS) log(`${what}: built in ${elapsed(Date.now() - started)}`);
            resolve(out.trim().split("\n").pop()!);
        });
    });
}

/** How often a long build says it is still going. */
const PROGRESS_MS = 30_000;

/** Builds the binaries if the cache lacks them (minutes, once per version); returns their directory. */
export function ensureBinaries(log: (s: string) => void): Promise<string> {
    log("Kubernetes binaries: checking the cache");
    // Measured on a new 2-core machine: 596 s, 420 MB in the cache (and Go's module and build caches).
    return buildCached("build-controlplane.sh", "Kubernetes binaries", "about 10 min, 420 MB", log);
}

/**
 * Builds the node's images if the cache lacks them (minutes, once per recipe): Scaledkite's own, then
 * the stand-ins for the stock images pipelines name; returns their directories.
 */
export async function ensureImages(log: (s: string) => void): Promise<string[]> {
    log("node images: checking the cache");
    // Measured on a new 2-core machine: 475 s, 1.1 GB (buildkite-agent from Go modules, three Debian root filesystems).
    const own = await buildCached("build-images.sh", "node images", "about 8 min, 1.1 GB", log);
    log("stock images (alpine, node, ruby, curl, nginx, bash): checking the cache");
    const stock = await buildCached("build-stock-images.sh", "stock images", "about 4 min, 400 MB", log);
    return [own, stock];
}

/**
 * Installs the real node's Debian packages when some are missing (install-node-packages.sh, which
 * says what it installs and does nothing when all are there). As root it runs; otherwise it fails with
 * the one command to run.
 */
export function ensureNodePackages(log: (s: string) => void): void {
    const missing = missingNodePrerequisites();
    const script = path.relative(process.cwd(), path.join(__dirname, "install-node-packages.sh"));
    const fix = `as root, run 'sudo bash ${script}' once, or set SCALEDKITE_LOCAL_NODE=off for a cluster without a real node`;
    if (missing && process.getuid?.() !== 0) throw new Error(`${missing}: ${fix}`);
    if (missing) log(`${missing}: installing them from Debian's packages (${script}, as root; about a minute)`);
    try {
        execFileSync("bash", [script], { stdio: ["ignore", "inherit", "inherit"] });
    } catch {
        throw new Error(`the local cluster's Debian packages could not be installed (the reason is above): ${fix}`);
    }
}

function startProcess(
    name: string,
    command: string,
    args: string[],
    env: NodeJS.ProcessEnv = process.env,
): ProcessInfo {
    const log = path.join(STATE_DIR, "logs", `${name}.log`);
    const fd = fs.openSync(log, "a");
    const child = spawn(command, args, { detached: true, stdio: ["ignore", fd, fd], env });
    child.unref();
    fs.closeSync(fd);
    if (!child.pid) throw new Error(`could not start ${name} (${command})`);
    return { name, pid: child.pid, log };
}

async function waitFor(
    what: string,
    check: () => Promise<boolean>,
    timeoutMs: number,
    processes: ProcessInfo[],
): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
        for (const p of processes) {
            if (!alive(p.pid)) {
                const tail = fs.existsSync(p.log)
                    ? fs.readFileSync(p.log, "utf8").trim().split("\n").slice(-3).join(" | ")
                    : "";
                throw new Error(`${p.name} exited while waiting for ${what}: ${tail} (log: ${p.log})`);
            }
        }
        if (await check().catch(() => false)) return;
        await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`timed out waiting for ${what}`);
}

/** GET `url` as the admin: its status and body, or undefined when nothing answers within 2 s. */
async function adminGet(url: string, token: string, ca: string): Promise<{ status: number; body: string } | undefined> {
    const https = await import("https");
    return new Promise((resolve) => {
        const req = https.get(url, { headers: { authorization: `Bearer ${token}` }, ca, timeout: 2000 }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        });
        req.on("error", () => resolve(undefined));
        req.on("timeout", () => {
            req.destroy();
            resolve(undefined);
        });
    });
}

async function httpsOk(url: string, token: string, ca: string): Promise<boolean> {
    return (await adminGet(url, token, ca))?.status === 200;
}

/** True when the node is Ready and without the not-ready taint (so pods can be scheduled on it). */
async function nodeReady(server: string, token: string, ca: string, name: string): Promise<boolean> {
    const answer = await adminGet(`${server}/api/v1/nodes/${name}`, token, ca);
    if (answer?.status !== 200) return false;
    const node = JSON.parse(answer.body);
    const ready = (node.status?.conditions ?? []).some(
        (c: { type: string; status: string }) => c.type === "Ready" && c.status === "True",
    );
    const tainted = (node.spec?.taints ?? []).some((t: { key: string }) => t.key.startsWith("node.kubernetes.io/"));
    return ready && !tainted;
}

function writeKubeconfig(server: string, caFile: string, token: string): void {
    const ca = fs.readFileSync(caFile).toString("base64");
    const kubeconfig = [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: scaledkite-local",
        "  cluster:",
        `    server: ${server}`,
        `    certificate-authority-data: ${ca}`,
        "users:",
        "- name: admin",
        "  user:",
        `    token: ${token}`,
        "contexts:",
        "- name: scaledkite-local",
        "  context:",
        "    cluster: scaledkite-local",
        "    user: admin",
        "current-context: scaledkite-local",
        "",
    ].join("\n");
    fs.writeFileSync(KUBECONFIG, kubeconfig, { mode: 0o600 });
}

/** Starts the local cluster, or reuses the one that runs. Returns its state. */
export async function up(log: (s: string) => void = console.error): Promise<ClusterState> {
    const current = status();
    if (current.running) {
        log(`local cluster already running at ${current.state!.server}`);
        return current.state!;
    }
    if (current.state) await down(() => {});
    const withNode = realNodeWanted();
    if (withNode) {
        ensureNodePackages(log);
        const owner = nodeOwner();
        if (owner && owner !== STATE_DIR && clusterRuns(owner)) {
            throw new Error(
                `the real node belongs to the local cluster in ${owner}: use that cluster, stop it (SCALEDKITE_LOCAL_DIR=${owner} npm run local-cluster -- down), or set SCALEDKITE_LOCAL_NODE=off`,
            );
        }
    }
    const binDir = await ensureBinaries(log);
    const imagesDirs = withNode ? await ensureImages(log) : undefined;
    fs.rmSync(STATE_DIR, { recursive: true, force: true });
    fs.mkdirSync(path.join(STATE_DIR, "logs"), { recursive: true });
    fs.mkdirSync(path.join(STATE_DIR, "pki"), { recursive: true });

    const [etcdPort, etcdPeerPort, apiPort, webhookPort, mirrorPort] = [
        await freePort(),
        await freePort(),
        await freePort(),
        await freePort(),
        await freePort(),
    ];
    const adminToken = crypto.randomBytes(24).toString("hex");
    fs.writeFileSync(ADMIN_TOKEN_FILE, adminToken, { mode: 0o600 });
    fs.writeFileSync(
        path.join(STATE_DIR, "pki", "tokens.csv"),
        `${adminToken},scaledkite-admin,scaledkite-admin,"system:masters"\n`,
        { mode: 0o600 },
    );
    const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
    fs.writeFileSync(path.join(STATE_DIR, "pki", "sa.key"), privateKey.export({ type: "pkcs8", format: "pem" }), {
        mode: 0o600,
    });
    fs.writeFileSync(path.join(STATE_DIR, "pki", "sa.pub"), publicKey.export({ type: "spki", format: "pem" }));
    const webhookConfig = path.join(STATE_DIR, "pki", "token-webhook.yaml");
    fs.writeFileSync(
        webhookConfig,
        [
            "apiVersion: v1",
            "kind: Config",
            "clusters:",
            "- name: eks-token-webhook",
            "  cluster:",
            `    server: http://127.0.0.1:${webhookPort}/authenticate`,
            "users:",
            "- name: kube-apiserver",
            "  user: {}",
            "contexts:",
            "- name: webhook",
            "  context:",
            "    cluster: eks-token-webhook",
            "    user: kube-apiserver",
            "current-context: webhook",
            "",
        ].join("\n"),
    );

    const processes: ProcessInfo[] = [];
    const record = (p: ProcessInfo) => {
        processes.push(p);
        fs.writeFileSync(STATE_FILE, JSON.stringify({ processes }, null, 2));
    };
    try {
        const etcdUrl = `http://127.0.0.1:${etcdPort}`;
        const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
        record(
            startProcess("etcd", path.join(binDir, "etcd"), [
                "--name=local",
                `--data-dir=${path.join(STATE_DIR, "etcd")}`,
                `--listen-client-urls=${etcdUrl}`,
                `--advertise-client-urls=${etcdUrl}`,
                `--listen-peer-urls=${peerUrl}`,
                `--initial-advertise-peer-urls=${peerUrl}`,
                `--initial-cluster=local=${peerUrl}`,
                "--unsafe-no-fsync",
                "--log-level=warn",
            ]),
        );

        // The node agent serves the token webhook the API server calls; start it first.
        const agentArgs = [
            "-r",
            "ts-node/register/transpile-only",
            path.join(__dirname, "nodeAgent.ts"),
            KUBECONFIG,
            String(webhookPort),
            // The registry mirror containerd pulls the node's own images through (registryMirror.ts).
            ...(imagesDirs ? [String(mirrorPort), ...imagesDirs] : []),
        ];
        record(
            startProcess("node-agent", process.execPath, agentArgs, {
                ...process.env,
                TS_NODE_PROJECT: path.join(PROJECT_ROOT, "tsconfig.json"),
            }),
        );

        const certDir = path.join(STATE_DIR, "pki");
        record(
            startProcess("kube-apiserver", path.join(binDir, "kube-apiserver"), [
                `--etcd-servers=${etcdUrl}`,
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                `--secure-port=${apiPort}`,
                `--cert-dir=${certDir}`,
                `--token-auth-file=${path.join(certDir, "tokens.csv")}`,
                `--authentication-token-webhook-config-file=${webhookConfig}`,
                "--authentication-token-webhook-version=v1",
                "--authentication-token-webhook-cache-ttl=10s",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                `--service-account-key-file=${path.join(certDir, "sa.pub")}`,
                `--service-account-signing-key-file=${path.join(certDir, "sa.key")}`,
                "--service-cluster-ip-range=10.96.0.0/16",
                "--enable-priority-and-fairness=false",
                "--max-requests-inflight=1000",
                "--max-mutating-requests-inflight=500",
                // logs and exec reach the kubelet on its bridge address (its host name resolves nowhere)
                "--kubelet-preferred-address-types=InternalIP",
            ]),
        );
        const server = `https://127.0.0.1:${apiPort}`;
        const caFile = path.join(certDir, "apiserver.crt");
        await waitFor(
            "kube-apiserver /readyz",
            async () =>
                fs.existsSync(caFile) && httpsOk(`${server}/readyz`, adminToken, fs.readFileSync(caFile, "utf8")),
            120_000,
            processes,
        );
        writeKubeconfig(server, caFile, adminToken);

        record(
            startProcess("kube-controller-manager", path.join(binDir, "kube-controller-manager"), [
                `--kubeconfig=${KUBECONFIG}`,
                "--leader-elect=false",
                "--secure-port=0",
                `--controllers=${CONTROLLERS.join(",")}`,
                "--use-service-account-credentials=false",
                "--concurrent-job-syncs=20",
                "--concurrent-ttl-after-finished-syncs=20",
                "--concurrent-gc-syncs=20",
                "--kube-api-qps=500",
                "--kube-api-burst=1000",
            ]),
        );

        record(
            startProcess("kube-scheduler", path.join(binDir, "kube-scheduler"), [
                `--kubeconfig=${KUBECONFIG}`,
                "--leader-elect=false",
                "--secure-port=0",
                "--kube-api-qps=500",
                "--kube-api-burst=1000",
            ]),
        );

        if (imagesDirs) {
            stopNode(); // what an earlier run that was killed may have left
            claimNode(STATE_DIR);
            const paths = writeNodeConfig(STATE_DIR, KUBECONFIG, `http://127.0.0.1:${mirrorPort}`);
            setUpNetwork();
            const sbinPath = { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/local/sbin:/usr/sbin:/sbin` };
            // containerd pulls through a proxy that is not there: an image the node lacks fails to pull at
            // once (ErrImagePull, as for a registry that cannot be reached) and no lookup leaves the machine.
            record(startProcess("containerd", "containerd", containerdArgs(paths), { ...sbinPath, ...NO_PULL_PROXY }));
            await waitFor("containerd", async () => containerdReady(), 30_000, processes);
            importImages(imagesDirs, log);
            record(startProcess("kubelet", path.join(binDir, "kubelet"), kubeletArgs(paths), sbinPath));
        }

        const state: ClusterState = {
            server,
            caFile,
            kubeconfig: KUBECONFIG,
            processes,
            binDir,
            startedAt: new Date().toISOString(),
            ...(imagesDirs ? { node: NODE_NAME } : {}),
        };
        fs.writeFileSync(STATE_FILE, JSON.stringify(state, null, 2));
        await waitFor(
            "the node agent",
            async () =>
                fs.readFileSync(path.join(STATE_DIR, "logs", "node-agent.log"), "utf8").includes("node agent ready"),
            60_000,
            processes,
        );
        if (imagesDirs)
            await waitFor(
                `node ${NODE_NAME} Ready`,
                async () => nodeReady(server, adminToken, fs.readFileSync(caFile, "utf8"), NODE_NAME),
                120_000,
                processes,
            );
        log(`local cluster up at ${server}`);
        return state;
    } catch (e) {
        await down(() => {});
        throw e;
    }
}

/** Stops every process the cluster started and removes its state. */
export async function down(log: (s: string) => void = console.error): Promise<void> {
    const state = readState();
    if (!state) {
        log("local cluster is not running");
        return;
    }
    for (const p of [...state.processes].reverse()) {
        if (alive(p.pid)) {
            try {
                process.kill(-p.pid, "SIGTERM");
            } catch {
                try {
                    process.kill(p.pid, "SIGTERM");
                } catch {
                    /* gone */
                }
            }
        }
    }
    const deadline = Date.now() + 10_000;
    while (state.processes.some((p) => alive(p.pid)) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
    for (const p of state.processes) {
        if (alive(p.pid)) {
            try {
                process.kill(-p.pid, "SIGKILL");
            } catch {
                try {
                    process.kill(p.pid, "SIGKILL");
                } catch {
                    /* gone */
                }
            }
        }
    }
    // The node is this cluster's to take down only if it still owns it.
    if ((state.node || state.processes.some((p) => p.name === "containerd")) && nodeOwner() === STATE_DIR) stopNode();
    fs.rmSync(STATE_DIR, { recursive: true, force: true });
    log("local cluster stopped");
}
