/**
 * The agent container's launcher and git credential helper, run for real: the launcher script with
 * this machine's sh in front of a scripted stand-in for buildkite-agent (the real agent runs it on
 * the real node in test/integration/realNode.test.ts), the helper with the real git.
 */
import * as assert from "assert";
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { AGENT_EXIT_NOT_RUN, agentGracePeriods, LAUNCHER_PATH, LAUNCHER_SCRIPT, readOnlyCredentialHelper } from "../scheduler/agentLauncher";

interface Run { code: number | null; stderr: string; stdout: string }

/** Runs the launcher with a fake `buildkite-agent` whose body is `agentScript` (sh). */
function launcher(dir: string, agentScript: string, env: Record<string, string> = {}, onStart?: (pid: number) => void): Promise<Run> {
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin, { recursive: true });
    // `buildkite-agent bootstrap` is what runs a job; any other call is the agent itself.
    fs.writeFileSync(path.join(bin, "buildkite-agent"), `#!/bin/sh\nif [ "$1" = bootstrap ]; then echo "bootstrap ran"; exit 0; fi\n${agentScript}\n`, { mode: 0o755 });
    const script = LAUNCHER_SCRIPT.replace(`run=${LAUNCHER_PATH}`, `run=${path.join(dir, "run")}`);
    assert.notStrictEqual(script, LAUNCHER_SCRIPT);
    return new Promise((resolve) => {
        const child = spawn("/bin/sh", ["-c", script, "scaledkite-agent", "start"], {
            env: { PATH: `${bin}:/usr/bin:/bin`, BUILDKITE_AGENT_ACQUIRE_JOB: "job-1", ...env },
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        child.on("close", (code) => resolve({ code, stdout, stderr }));
        if (onStart) onStart(child.pid!);
    });
}

describe("agent launcher", () => {
    let dir: string;
    beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "launcher-")); });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("passes the container's arguments to the agent, and its exit code when the job ran", async () => {
        // The agent runs the job: it runs its bootstrap-script.
        const r = await launcher(dir, `echo "args: $*"; $BUILDKITE_BOOTSTRAP_SCRIPT_PATH; exit 0`);
        assert.strictEqual(r.code, 0, r.stderr);
        assert.match(r.stdout, /^args: start$/m);
        assert.match(r.stdout, /^bootstrap ran$/m, "the launcher's bootstrap-script runs the real bootstrap");
    });

    it("fails the pod with its own code when the agent exits 0 without running the job", async () => {
        // What v3.138.3 does when its acquire retries run out (423 locked): log, then exit 0.
        const r = await launcher(dir, `echo "Failed to acquire and run job" >&2; exit 0`);
        assert.strictEqual(r.code, AGENT_EXIT_NOT_RUN);
        assert.match(r.stderr, /scaledkite: buildkite-agent exited without running job job-1 .* exiting 28 so Kubernetes gives the job a new worker/);
    });

    it("keeps the agent's own non-zero exit codes (27: acquisition rejected)", async () => {
        const r = await launcher(dir, "exit 27");
        assert.strictEqual(r.code, 27);
    });

    it("wraps a bootstrap-script the user set, rather than replacing it", async () => {
        const custom = path.join(dir, "my-bootstrap");
        fs.writeFileSync(custom, "#!/bin/sh\necho custom bootstrap ran\n", { mode: 0o755 });
        const r = await launcher(dir, "$BUILDKITE_BOOTSTRAP_SCRIPT_PATH; exit 0", { BUILDKITE_BOOTSTRAP_SCRIPT_PATH: custom });
        assert.strictEqual(r.code, 0, r.stderr);
        assert.match(r.stdout, /^custom bootstrap ran$/m);
    });

    it("passes the pod's SIGTERM on twice, which makes the agent cancel its job rather than wait for it", async () => {
        const ready = path.join(dir, "ready");
        let launcherPid = 0;
        // As the agent does: the first SIGTERM stops gracefully (waits), the second cancels the job.
        const run = launcher(dir, [
            "n=0", `trap 'n=$((n+1)); echo "got-TERM-$n"; [ $n -ge 2 ] && { echo cancelled; exit 0; }' TERM`,
            "$BUILDKITE_BOOTSTRAP_SCRIPT_PATH >/dev/null",
            `: > ${ready}`, "while :; do sleep 0.1; done",
        ].join("\n"), {}, (pid) => (launcherPid = pid));
        const deadline = Date.now() + 10_000;
        while (!fs.existsSync(ready) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        process.kill(launcherPid, "SIGTERM");
        const r = await run;
        assert.match(r.stdout, /^got-TERM-1\ngot-TERM-2\ncancelled$/m);
        assert.match(r.stderr, /the pod is stopping: cancelling the job/);
        assert.strictEqual(r.code, 0);
    });
});

describe("agentGracePeriods", () => {
    const table: [number, number, number][] = [
        // termination grace, cancel grace, signal grace
        [60, 55, 50],
        [30, 25, 20],
        [10, 5, 2],
        [3, 2, 1],
        [0, 2, 1],
    ];
    for (const [grace, cancel, signal] of table) {
        it(`${grace}s of termination grace → cancel ${cancel}s, signal ${signal}s`, () => {
            const g = agentGracePeriods(grace);
            assert.deepStrictEqual(g, { cancelSeconds: cancel, signalSeconds: signal });
            assert.ok(g.signalSeconds < g.cancelSeconds, "the agent refuses signal >= cancel");
        });
    }
});

describe("read-only git credential helper (real git)", () => {
    let dir: string;
    let file: string;
    before(function () {
        if (spawnSync("git", ["--version"]).status !== 0 || spawnSync("unshare", ["-m", "true"]).status !== 0) this.skip();
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitcred-"));
        file = path.join(dir, "git-credentials");
        fs.writeFileSync(file, "https://bot:s3cret@git.example.com\n", { mode: 0o400 });
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** git with `helper`, the credentials directory mounted read-only as a Secret volume is (even root cannot write). */
    const gitWith = (helper: string, args: string[], input: string) => spawnSync("unshare", ["-m", "sh", "-c",
        `mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && h="$1" && shift && exec git -c "credential.helper=$h" "$@"`, dir, helper, ...args], {
        input, encoding: "utf8", env: { ...process.env, GIT_TERMINAL_PROMPT: "0", HOME: os.tmpdir() },
    });
    const git = (args: string[], input: string) => gitWith(readOnlyCredentialHelper(file), args, input);

    it("answers get from the file", () => {
        const r = git(["credential", "fill"], "protocol=https\nhost=git.example.com\n\n");
        assert.strictEqual(r.status, 0, r.stderr);
        assert.match(r.stdout, /^username=bot$/m);
        assert.match(r.stdout, /^password=s3cret$/m);
    });

    it("stores and erases nothing, and says nothing, where `store` printed a fatal lock error", () => {
        for (const verb of ["approve", "reject"]) {
            const r = git(["credential", verb], "protocol=https\nhost=git.example.com\nusername=bot\npassword=new\n\n");
            assert.strictEqual(r.status, 0);
            assert.strictEqual(r.stderr, "", `${verb}: ${r.stderr}`);
        }
        assert.strictEqual(fs.readFileSync(file, "utf8"), "https://bot:s3cret@git.example.com\n");
        // The stock helper on the same read-only file: the error the issue reports.
        const stock = gitWith(`store --file=${file}`, ["credential", "approve"], "protocol=https\nhost=git.example.com\nusername=bot\npassword=new\n\n");
        assert.match(stock.stderr, /unable to get credential storage lock/);
    });
});
