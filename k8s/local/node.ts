/**
 * The local cluster's real node: containerd (Debian's package, with runc and the CNI plugins), the
 * kubelet built from Go modules at the control plane's version, and a bridge network that stays on
 * this machine. Worker pods run here as real containers from images built by build-images.sh.
 *
 * What it sets up, and takes down again (`stopNode`), all under names of its own:
 *   /var/lib/scaledkite/node, /run/scaledkite/node   containerd's and the kubelet's state
 *   bridge `skbr0` (POD_GATEWAY_IP/24)             pods' network; no default route, no NAT, and
 *                                                   FORWARD rules that drop anything routed off it
 *   cgroups `kubepods`                              the pods' cgroups (cgroupfs driver)
 * Facts this relies on, measured on this kind of machine: ../shared/reference/REAL-NODE-FACTS.md.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { mirrorHostsToml } from "./registryMirror";

export const NODE_NAME = "scaledkite-node";
export const BRIDGE = "skbr0";
/** The pods' subnet; the bridge (this machine) is its first address. */
export const POD_SUBNET = "10.244.77.0/24";
/** This machine's address on the pods' bridge: local stand-ins that pods call listen here. */
export const POD_GATEWAY_IP = "10.244.77.1";
const NODE_ROOT = "/var/lib/scaledkite/node";
const NODE_RUN = "/run/scaledkite/node";
export const CONTAINERD_SOCKET = path.join(NODE_RUN, "containerd", "containerd.sock");
const KUBELET_ROOT = path.join(NODE_ROOT, "kubelet");
const CNI_CONF_DIR = path.join(NODE_ROOT, "cni", "net.d");
const CNI_STATE_DIR = path.join(NODE_RUN, "cni");
const CNI_BIN_DIRS = ["/usr/lib/cni", "/opt/cni/bin"];
/** The images the node holds, built by build-images.sh: tests name them as `image` / `dindImage`. */
export const LOCAL_IMAGES = {
    agent: "scaledkite.local/buildkite-agent:3.138.3",
    dind: "scaledkite.local/dind:20.10.24",
    dindRootless: "scaledkite.local/dind-rootless:20.10.24",
    pause: "scaledkite.local/pause:1",
} as const;
/**
 * Stand-ins for the stock images pipelines name (build-stock-images.sh, from Debian's packages: no
 * registry is reachable), by tar file, under the names containerd resolves the short ones to; and the
 * stock agent image, which is the local agent image under another name.
 */
export const STOCK_IMAGES: Record<string, string> = {
    alpine: "docker.io/library/alpine:latest",
    bash: "docker.io/library/bash:latest",
    node: "docker.io/library/node:22-alpine",
    ruby: "docker.io/library/ruby:alpine",
    curl: "docker.io/curlimages/curl:latest",
    nginx: "docker.io/library/nginx:latest",
};
export const STOCK_AGENT_IMAGE = "docker.io/buildkite/agent:latest";
/** containerd's environment: every pull goes to a proxy on a loopback port nothing listens on. */
export const NO_PULL_PROXY = {
    HTTPS_PROXY: "http://127.0.0.1:9",
    HTTP_PROXY: "http://127.0.0.1:9",
    NO_PROXY: "",
} as const;
/** The chain of FORWARD rules that keeps pods' traffic on the bridge. */
const FORWARD_CHAIN = "SCALEDKITE-PODS";

/** Which cluster (its state directory) owns the node: one real node per machine. */
const OWNER_FILE = "/run/scaledkite/node-owner";

/** The state directory of the cluster whose node this machine runs, if any. */
export function nodeOwner(): string | undefined {
    try {
        return fs.readFileSync(OWNER_FILE, "utf8").trim() || undefined;
    } catch {
        return undefined;
    }
}

export function claimNode(stateDir: string): void {
    fs.mkdirSync(path.dirname(OWNER_FILE), { recursive: true });
    fs.writeFileSync(OWNER_FILE, stateDir);
}

export interface NodePaths {
    containerdConfig: string;
    kubeletConfig: string;
    kubeletKubeconfig: string;
    resolvConf: string;
}

function run(cmd: string, args: string[], opts: { allowFail?: boolean; input?: string } = {}): string {
    const r = spawnSync(cmd, args, { encoding: "utf8", input: opts.input });
    if (r.status !== 0 && !opts.allowFail) {
        throw new Error(
            `${cmd} ${args.join(" ")} failed: ${(r.stderr || r.stdout || String(r.error)).trim().split("\n").slice(-2).join(" | ")}`,
        );
    }
    return r.stdout ?? "";
}

/** What the machine must have for a real node, as one line naming the fix; undefined when all is there. */
export function missingNodePrerequisites(): string | undefined {
    const have = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
    const missing = ["containerd", "runc", "ctr", "iptables", "ip"].filter((c) => !have(c));
    if (!CNI_BIN_DIRS.some((d) => fs.existsSync(path.join(d, "bridge")))) missing.push("the CNI plugins");
    if (missing.length === 0) return undefined;
    return `the real node needs ${missing.join(", ")}`;
}

function cniBinDir(): string {
    return CNI_BIN_DIRS.find((d) => fs.existsSync(path.join(d, "bridge"))) ?? CNI_BIN_DIRS[0];
}

/** Writes containerd's, the CNI network's and the kubelet's configuration. */
export function writeNodeConfig(stateDir: string, adminKubeconfig: string, mirrorUrl: string): NodePaths {
    for (const d of [NODE_ROOT, NODE_RUN, CNI_CONF_DIR, CNI_STATE_DIR, KUBELET_ROOT, path.join(NODE_RUN, "containerd")])
        fs.mkdirSync(d, { recursive: true });
    const dir = path.join(stateDir, "node");
    fs.mkdirSync(dir, { recursive: true });
    const containerdConfig = path.join(dir, "containerd.toml");
    // docker.io resolves through the node agent's registry mirror (registryMirror.ts), nowhere else.
    const certsDir = path.join(dir, "certs.d");
    fs.mkdirSync(path.join(certsDir, "docker.io"), { recursive: true });
    fs.writeFileSync(path.join(certsDir, "docker.io", "hosts.toml"), mirrorHostsToml(mirrorUrl));
    fs.writeFileSync(
        containerdConfig,
        [
            "version = 2",
            `root = "${NODE_ROOT}/containerd"`,
            `state = "${NODE_RUN}/containerd/state"`,
            "[grpc]",
            `  address = "${CONTAINERD_SOCKET}"`,
            '[plugins."io.containerd.grpc.v1.cri"]',
            `  sandbox_image = "${LOCAL_IMAGES.pause}"`,
            // This machine lacks CAP_SYS_RESOURCE: without this, runc cannot set oom_score_adj and every
            // sandbox fails ("can't get final child's PID from pipe: EOF").
            "  restrict_oom_score_adj = true",
            "  enable_cdi = false",
            '  [plugins."io.containerd.grpc.v1.cri".registry]',
            `    config_path = "${certsDir}"`,
            '  [plugins."io.containerd.grpc.v1.cri".cni]',
            `    bin_dir = "${cniBinDir()}"`,
            `    conf_dir = "${CNI_CONF_DIR}"`,
            '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
            '    runtime_type = "io.containerd.runc.v2"',
            "",
        ].join("\n"),
    );
    fs.writeFileSync(
        path.join(CNI_CONF_DIR, "10-scaledkite.conflist"),
        JSON.stringify(
            {
                cniVersion: "0.4.0",
                name: "scaledkite-pods",
                plugins: [
                    {
                        type: "bridge",
                        bridge: BRIDGE,
                        isGateway: true,
                        ipMasq: false,
                        hairpinMode: true,
                        // host-local with no routes: pods reach the bridge's subnet and nothing else.
                        ipam: {
                            type: "host-local",
                            ranges: [[{ subnet: POD_SUBNET, gateway: POD_GATEWAY_IP }]],
                            dataDir: path.join(CNI_STATE_DIR, "ipam"),
                        },
                    },
                    { type: "portmap", capabilities: { portMappings: true } },
                ],
            },
            null,
            2,
        ),
    );
    // Pods get a resolver that is not there: a lookup fails at once and nothing leaves the machine.
    const resolvConf = path.join(dir, "resolv.conf");
    fs.writeFileSync(resolvConf, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
    const kubeletConfig = path.join(dir, "kubelet.yaml");
    fs.writeFileSync(
        kubeletConfig,
        [
            "apiVersion: kubelet.config.k8s.io/v1beta1",
            "kind: KubeletConfiguration",
            `address: ${POD_GATEWAY_IP}`,
            "port: 10250",
            "readOnlyPort: 0",
            "healthzPort: 0",
            // The API server (logs, exec) is the only caller and this listens on the bridge only.
            "authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}",
            "authorization: {mode: AlwaysAllow}",
            "cgroupDriver: cgroupfs",
            `containerRuntimeEndpoint: unix://${CONTAINERD_SOCKET}`,
            "failSwapOn: false",
            `resolvConf: ${resolvConf}`,
            "serializeImagePulls: false",
            // The images were imported, not pulled: never collect them.
            "imageGCHighThresholdPercent: 100",
            "imageGCLowThresholdPercent: 99",
            "evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}",
            "enforceNodeAllocatable: []",
            "nodeStatusUpdateFrequency: 4s",
            "syncFrequency: 5s",
            `volumePluginDir: ${path.join(NODE_ROOT, "volume-plugins")}`,
            "",
        ].join("\n"),
    );
    return { containerdConfig, kubeletConfig, kubeletKubeconfig: adminKubeconfig, resolvConf };
}

/** The bridge exists before the kubelet starts, so the kubelet can listen on it. */
export function setUpNetwork(): void {
    if (run("ip", ["link", "show", BRIDGE], { allowFail: true }) === "") {
        run("ip", ["link", "add", BRIDGE, "type", "bridge"]);
    }
    run("ip", ["addr", "replace", `${POD_GATEWAY_IP}/24`, "dev", BRIDGE]);
    run("ip", ["link", "set", BRIDGE, "up"]);
    const forward = fs.readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim();
    fs.writeFileSync(path.join(NODE_RUN, "ip_forward.saved"), forward);
    // The bridge plugin turns routing on; nothing may be routed to or from the pods' subnet.
    run("iptables", ["-N", FORWARD_CHAIN], { allowFail: true });
    run("iptables", ["-F", FORWARD_CHAIN]);
    run("iptables", ["-A", FORWARD_CHAIN, "-s", POD_SUBNET, "-j", "DROP"]);
    run("iptables", ["-A", FORWARD_CHAIN, "-d", POD_SUBNET, "-j", "DROP"]);
    if (spawnSync("iptables", ["-C", "FORWARD", "-j", FORWARD_CHAIN]).status !== 0)
        run("iptables", ["-I", "FORWARD", "1", "-j", FORWARD_CHAIN]);
    openTunDevice();
}

/**
 * /dev/net/tun as a usual node has it: 0666, which systemd's udev rules (50-udev-default.rules) set.
 * This machine has no udev and leaves it 0600, so rootless dind's slirp4netns (uid 1000) could not
 * open it. The old mode is restored by tearDown.
 */
function openTunDevice(): void {
    const tun = "/dev/net/tun";
    let mode: number;
    try {
        mode = fs.statSync(tun).mode & 0o777;
    } catch {
        return;
    }
    const saved = path.join(NODE_RUN, "tun-mode.saved");
    if (!fs.existsSync(saved)) fs.writeFileSync(saved, mode.toString(8));
    if (mode !== 0o666) fs.chmodSync(tun, 0o666);
}

/**
 * Imports the docker-archive tars of `imagesDirs` into containerd's Kubernetes namespace (those not
 * there yet), and names the local agent image as the stock one too.
 */
export function importImages(imagesDirs: string[], log: (s: string) => void): void {
    const ctr = (...args: string[]) => run("ctr", ["--address", CONTAINERD_SOCKET, "-n", "k8s.io", ...args]);
    const present = ctr("images", "list", "-q").split("\n");
    for (const file of imagesDirs.flatMap((dir) =>
        fs
            .readdirSync(dir)
            .filter((f) => f.endsWith(".tar"))
            .map((f) => path.join(dir, f)),
    )) {
        const base = path.basename(file, ".tar");
        const tag = STOCK_IMAGES[base] ?? Object.values(LOCAL_IMAGES).find((t) => t.includes(`/${base}:`));
        if (tag && present.includes(tag)) continue;
        const started = Date.now();
        run("ctr", ["--address", CONTAINERD_SOCKET, "-n", "k8s.io", "images", "import", "--no-unpack=false", file]);
        log(`imported ${base} in ${Date.now() - started} ms`);
    }
    if (!present.includes(STOCK_AGENT_IMAGE) && ctr("images", "list", "-q").split("\n").includes(LOCAL_IMAGES.agent))
        ctr("images", "tag", LOCAL_IMAGES.agent, STOCK_AGENT_IMAGE);
}

function mountsUnder(prefixes: string[]): string[] {
    const mounts = fs
        .readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .map((l) => l.split(" ")[4])
        .filter((m): m is string => Boolean(m) && prefixes.some((p) => m.startsWith(p)));
    return mounts.sort((a, b) => b.length - a.length);
}

function cgroupDirs(): string[] {
    const root = "/sys/fs/cgroup";
    if (!fs.existsSync(root)) return [];
    const dirs: string[] = [];
    for (const h of fs.readdirSync(root)) {
        const d = path.join(root, h, "kubepods");
        if (fs.existsSync(d)) dirs.push(d);
    }
    if (fs.existsSync(path.join(root, "kubepods"))) dirs.push(path.join(root, "kubepods"));
    return dirs;
}

function walkDirs(dir: string): string[] {
    const out: string[] = [];
    for (const e of fs.readdirSync(dir, { withFileTypes: true }))
        if (e.isDirectory()) out.push(...walkDirs(path.join(dir, e.name)));
    out.push(dir);
    return out; // deepest first
}

/**
 * Removes everything the node left on this machine: containers still running (by their cgroups),
 * containerd's shims, mounts, network namespaces, the bridge and its veths, the FORWARD rules,
 * the kubelet's cgroups, and its state. Safe to run when nothing (or half) was set up.
 */
export function stopNode(): void {
    // Containers outlive the kubelet and containerd: stop them by their cgroups.
    for (let round = 0; round < 3; round++) {
        let found = false;
        for (const top of cgroupDirs()) {
            for (const d of walkDirs(top)) {
                const procs = path.join(d, "cgroup.procs");
                if (!fs.existsSync(procs)) continue;
                for (const pid of fs.readFileSync(procs, "utf8").split("\n").filter(Boolean)) {
                    found = true;
                    try {
                        process.kill(Number(pid), "SIGKILL");
                    } catch {
                        /* gone */
                    }
                }
            }
        }
        if (!found) break;
        spawnSync("sleep", ["0.3"]);
    }
    spawnSync("pkill", ["-KILL", "-f", `containerd-shim.*${NODE_RUN}`]);
    for (const m of mountsUnder([NODE_ROOT, NODE_RUN, "/run/netns/cni-", "/var/run/netns/cni-"])) {
        spawnSync("umount", ["-l", m]);
    }
    for (const ns of fs.existsSync("/run/netns")
        ? fs.readdirSync("/run/netns").filter((n) => n.startsWith("cni-"))
        : []) {
        spawnSync("ip", ["netns", "delete", ns]);
    }
    for (const top of cgroupDirs()) {
        for (const d of walkDirs(top)) {
            try {
                fs.rmdirSync(d);
            } catch {
                /* still busy or gone */
            }
        }
    }
    spawnSync("ip", ["link", "delete", BRIDGE]);
    if (spawnSync("iptables", ["-C", "FORWARD", "-j", FORWARD_CHAIN]).status === 0)
        spawnSync("iptables", ["-D", "FORWARD", "-j", FORWARD_CHAIN]);
    spawnSync("iptables", ["-F", FORWARD_CHAIN]);
    spawnSync("iptables", ["-X", FORWARD_CHAIN]);
    // kube-proxy is not run, but the kubelet makes KUBE-* chains of its own.
    for (const table of ["filter", "nat", "mangle"]) {
        const rules = run("iptables", ["-t", table, "-S"], { allowFail: true }).split("\n");
        for (const rule of rules.filter((r) => r.startsWith("-A ") && /KUBE-/.test(r))) {
            spawnSync("iptables", ["-t", table, ...rule.replace(/^-A /, "-D ").split(" ")]);
        }
        for (const chain of rules.filter((r) => r.startsWith("-N KUBE-")).map((r) => r.slice(3))) {
            spawnSync("iptables", ["-t", table, "-F", chain]);
            spawnSync("iptables", ["-t", table, "-X", chain]);
        }
    }
    const saved = path.join(NODE_RUN, "ip_forward.saved");
    if (fs.existsSync(saved)) {
        try {
            fs.writeFileSync("/proc/sys/net/ipv4/ip_forward", fs.readFileSync(saved, "utf8").trim());
        } catch {
            /* read-only */
        }
    }
    const tunMode = path.join(NODE_RUN, "tun-mode.saved");
    if (fs.existsSync(tunMode)) {
        try {
            fs.chmodSync("/dev/net/tun", parseInt(fs.readFileSync(tunMode, "utf8").trim(), 8));
        } catch {
            /* gone */
        }
    }
    for (const d of [NODE_RUN, NODE_ROOT, "/var/log/pods", "/var/log/containers", OWNER_FILE]) {
        try {
            fs.rmSync(d, { recursive: true, force: true });
        } catch {
            /* a mount still busy */
        }
    }
}

/** containerd's arguments. */
export function containerdArgs(paths: NodePaths): string[] {
    return ["--config", paths.containerdConfig, "--log-level", "warn"];
}

/** The kubelet's arguments. */
export function kubeletArgs(paths: NodePaths): string[] {
    return [
        `--config=${paths.kubeletConfig}`,
        `--kubeconfig=${paths.kubeletKubeconfig}`,
        `--hostname-override=${NODE_NAME}`,
        `--node-ip=${POD_GATEWAY_IP}`,
        `--root-dir=${KUBELET_ROOT}`,
        `--cert-dir=${path.join(NODE_ROOT, "pki")}`,
        "--v=1",
    ];
}

/** True when containerd answers on its socket. */
export function containerdReady(): boolean {
    return (
        fs.existsSync(CONTAINERD_SOCKET) && spawnSync("ctr", ["--address", CONTAINERD_SOCKET, "version"]).status === 0
    );
}
