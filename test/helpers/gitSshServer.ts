/**
 * A private git repository over SSH, as a git host serves one: this machine's OpenSSH sshd on a
 * port of its own, with a host key made for the test, one authorized client key, and a forced
 * command that allows nothing but `git-upload-pack` (clone and fetch).
 */
import { type ChildProcess, spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { freePort } from "../../k8s/local/cluster";
import { bareRepository } from "../../k8s/local/gitHttpServer";

export interface GitSshServer {
    /** The repository's ssh:// URL. */
    url: string;
    /** The client's private key (what `scaledkite:gitSshKey` holds). */
    clientKey: string;
    /** The known_hosts line for this server (what `scaledkite:gitKnownHosts` holds). */
    knownHosts: string;
    /** A known_hosts line for another key on the same address: what strict checking must refuse. */
    wrongKnownHosts: string;
    close(): Promise<void>;
}

function run(cmd: string, args: string[]): void {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
}

/** Serves a bare repository whose main branch holds `files` over SSH on `host`. */
export async function startGitSshServer(host: string, files: Record<string, string>): Promise<GitSshServer> {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "git-ssh-"));
    fs.chmodSync(root, 0o700);
    const repo = bareRepository(root, files);

    const key = (name: string) => {
        run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path.join(root, name)]);
        return {
            priv: fs.readFileSync(path.join(root, name), "utf8"),
            pub: fs.readFileSync(path.join(root, `${name}.pub`), "utf8").trim(),
        };
    };
    const hostKey = key("host_key");
    const otherHostKey = key("other_host_key");
    const client = key("client_key");
    // Only clone and fetch of this one repository; no shell, no forwarding.
    const allow = `case "$SSH_ORIGINAL_COMMAND" in "git-upload-pack '${repo}'") exec git-upload-pack '${repo}';; *) echo "only git-upload-pack of ${repo}" >&2; exit 1;; esac`;
    fs.writeFileSync(
        path.join(root, "authorized_keys"),
        `command="${allow.replace(/"/g, '\\"')}",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding ${client.pub}\n`,
        { mode: 0o600 },
    );
    const port = await freePort(host);
    fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
    fs.writeFileSync(
        path.join(root, "sshd_config"),
        [
            `ListenAddress ${host}:${port}`,
            `HostKey ${path.join(root, "host_key")}`,
            `AuthorizedKeysFile ${path.join(root, "authorized_keys")}`,
            `PidFile ${path.join(root, "sshd.pid")}`,
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "LogLevel ERROR",
            "",
        ].join("\n"),
    );
    const sshd: ChildProcess = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", path.join(root, "sshd_config")], {
        stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    sshd.stderr!.on("data", (d) => (stderr += d));
    const deadline = Date.now() + 10_000;
    for (;;) {
        const up = await new Promise<boolean>((resolve) => {
            const c = net
                .connect(port, host, () => {
                    c.destroy();
                    resolve(true);
                })
                .once("error", () => resolve(false));
        });
        if (up) break;
        if (sshd.exitCode !== null || Date.now() > deadline) throw new Error(`sshd did not start: ${stderr.trim()}`);
        await new Promise((r) => setTimeout(r, 100));
    }
    const hostPart = (pub: string) => pub.split(" ").slice(0, 2).join(" ");
    return {
        url: `ssh://root@${host}:${port}${repo}`,
        clientKey: client.priv,
        knownHosts: `[${host}]:${port} ${hostPart(hostKey.pub)}`,
        wrongKnownHosts: `[${host}]:${port} ${hostPart(otherHostKey.pub)}`,
        close: async () => {
            sshd.kill("SIGTERM");
            fs.rmSync(root, { recursive: true, force: true });
        },
    };
}
