/**
 * The worker pod's two scripts and its git credential helper, run for real: the agent container's
 * launcher and the command container's wrapper with this machine's sh in front of scripted stand-ins
 * for buildkite-agent (the real agent runs them on the real node in test/integration/realNode.test.ts),
 * the helper with the real git.
 */
import * as assert from "assert";
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import {
    agentImageVersion,
    compareVersions,
    MIN_AGENT_VERSION,
    AGENT_EXIT_NOT_RUN,
    AGENT_EXITED_MARK,
    AGENT_HOOKS_PATH,
    agentGracePeriods,
    COMMAND_AFTER_AGENT_SECONDS,
    COMMAND_SCRIPT,
    JOB_CONTEXT_PATH,
    LAUNCHER_PATH,
    LAUNCHER_SCRIPT,
    readOnlyCredentialHelper,
} from "../../scheduler/core/agentLauncher";

interface Run {
    code: number | null;
    stderr: string;
    stdout: string;
}

/** The script with its fixed paths moved under `dir` (each replacement must happen). */
function relocated(script: string, dir: string, replacements: [string, string][]): string {
    for (const [from, to] of replacements) {
        assert.ok(script.includes(from), `the script has ${from}`);
        script = script.split(from).join(to);
    }
    return script.replace(`exited=${AGENT_EXITED_MARK}`, `exited=${path.join(dir, "exited")}`);
}

/** Runs `script` as the container's sh would, with a fake `buildkite-agent` whose body is `agentScript` (sh). */
function run(
    dir: string,
    script: string,
    args: string[],
    agentScript: string,
    env: Record<string, string> = {},
    onStart?: (pid: number) => void,
): Promise<Run> {
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, "buildkite-agent"), `#!/bin/sh\n${agentScript}\n`, { mode: 0o755 });
    return new Promise((resolve) => {
        // Its own process group: what a container's PID namespace does when PID 1 exits, killing the group does here.
        const child = spawn("/bin/sh", ["-c", script, ...args], {
            env: { PATH: `${bin}:/usr/bin:/bin`, BUILDKITE_AGENT_ACQUIRE_JOB: "job-1", ...env },
            detached: true,
        });
        child.on("exit", () => {
            try {
                process.kill(-child.pid!, "SIGKILL");
            } catch {
                /* the group is gone */
            }
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        child.on("close", (code) => resolve({ code, stdout, stderr }));
        if (onStart) onStart(child.pid!);
    });
}

async function until(file: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!fs.existsSync(file) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(fs.existsSync(file), `${file} appeared`);
}

describe("agent launcher (the agent container)", () => {
    let dir: string;
    beforeEach(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "launcher-"));
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    const hooks = () => path.join(dir, "hooks");
    /** The launcher with a fake agent; the agent's hooks path as the manifest sets it. */
    const launcher = (agentScript: string, onStart?: (pid: number) => void) =>
        run(
            dir,
            relocated(LAUNCHER_SCRIPT, dir, [
                [`run=${LAUNCHER_PATH}`, `run=${path.join(dir, "run")}`],
                [`hooks=${AGENT_HOOKS_PATH}`, `hooks=${hooks()}`],
            ]),
            ["scaledkite-agent", "start"],
            agentScript,
            { BUILDKITE_HOOKS_PATH: hooks() },
            onStart,
        );
    /** What the agent does for a job it acquired: its pre-bootstrap hook, before the job starts (agent/run_job.go). */
    const runsJob = `"$BUILDKITE_HOOKS_PATH/pre-bootstrap" || exit 99`;

    it("passes the container's arguments to the agent, and its exit code when the job ran", async () => {
        const r = await launcher(`echo "args: $*"; ${runsJob}; exit 0`);
        assert.strictEqual(r.code, 0, r.stderr);
        assert.match(r.stdout, /^args: start$/m);
        assert.strictEqual(
            fs.readFileSync(path.join(dir, "exited"), "utf8").trim(),
            "0",
            "the command container learns that the agent exited",
        );
    });

    it("fails the pod with its own code when the agent exits 0 without running the job", async () => {
        // What v3.138.3 does when its acquire retries run out (423 locked): log, then exit 0.
        const r = await launcher(`echo "Failed to acquire and run job" >&2; exit 0`);
        assert.strictEqual(r.code, AGENT_EXIT_NOT_RUN);
        assert.match(
            r.stderr,
            /scaledkite: buildkite-agent exited without running job job-1 .* exiting 28 so Kubernetes gives the job a new worker/,
        );
        assert.strictEqual(fs.readFileSync(path.join(dir, "exited"), "utf8").trim(), "28");
    });

    it("keeps the agent's own non-zero exit codes (27: acquisition rejected)", async () => {
        const r = await launcher("exit 27");
        assert.strictEqual(r.code, 27);
    });

    it("passes the pod's SIGTERM on exactly once: under --kubernetes-exec a second one would drop the job", async () => {
        const ready = path.join(dir, "ready");
        let launcherPid = 0;
        // As the agent does under --kubernetes-exec: the first SIGTERM cancels the job, a second exits at once.
        const r = launcher(
            [
                "n=0",
                `trap 'n=$((n+1)); echo "got-TERM-$n"; [ $n -ge 2 ] && { echo lost; exit 1; }' TERM`,
                runsJob,
                `: > ${ready}`,
                "i=0; while [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; echo cancelled; exit 0",
            ].join("\n"),
            (pid) => (launcherPid = pid),
        );
        await until(ready);
        process.kill(launcherPid, "SIGTERM");
        const done = await r;
        assert.match(done.stdout, /^got-TERM-1\ncancelled$/m);
        assert.doesNotMatch(done.stdout, /got-TERM-2|lost/);
        assert.match(done.stderr, /the pod is stopping: cancelling the job/);
        assert.strictEqual(done.code, 0);
    });
});

describe("command wrapper (the command container)", () => {
    let dir: string;
    let agentSocket: net.Server | undefined;
    beforeEach(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "command-"));
    });
    afterEach(async () => {
        await new Promise<void>((r) => (agentSocket ? agentSocket.close(() => r()) : r()));
        agentSocket = undefined;
        fs.rmSync(dir, { recursive: true, force: true });
    });

    /** What the agent leaves in the job context directory for a running job: the job's environment as JSON, then its socket. */
    async function agentRunsJob(env: Record<string, string>): Promise<void> {
        fs.writeFileSync(path.join(dir, "job-env-json-job-1123"), JSON.stringify(env) + "\n");
        agentSocket = net.createServer();
        await new Promise<void>((r) => agentSocket!.listen(path.join(dir, "buildkite.sock"), r));
    }
    const wrapper = (bootstrap: string, onStart?: (pid: number) => void) =>
        run(
            dir,
            relocated(COMMAND_SCRIPT, dir, [
                [`ctx=${JOB_CONTEXT_PATH}`, `ctx=${dir}`],
                [`left=${COMMAND_AFTER_AGENT_SECONDS}`, "left=1"],
            ]),
            ["scaledkite-command"],
            `[ "$1" = kubernetes-bootstrap ] || exit 64\n${bootstrap}`,
            {},
            onStart,
        );

    it("passes the job's command on to kubernetes-bootstrap, and exits 0 whatever the job's result (the agent reports it)", async function () {
        if (spawnSync("jq", ["--version"]).status !== 0) this.skip();
        await agentRunsJob({ BUILDKITE_COMMAND: "echo 'one'\necho \"two $X\"", BUILDKITE_JOB_ID: "job-1" });
        const r = await wrapper(`printf '%s\\n' "$BUILDKITE_COMMAND"; exit 3`);
        assert.strictEqual(r.code, 0, r.stderr);
        assert.strictEqual(r.stdout, "echo 'one'\necho \"two $X\"\n", "the command exactly, quotes, newlines and all");
        assert.match(r.stderr, /the job's bootstrap exited 3; the agent reports the job's result to Buildkite/);
    });

    it("a step without a command (a plugin's command hook runs instead) gets none", async function () {
        if (spawnSync("jq", ["--version"]).status !== 0) this.skip();
        await agentRunsJob({ BUILDKITE_JOB_ID: "job-1" });
        const r = await wrapper(`echo "command=\${BUILDKITE_COMMAND-unset}"`);
        assert.match(r.stdout, /^command=unset$/m);
    });

    it("waits for the agent's job, and ends at once when the agent exits without one", async () => {
        const started = Date.now();
        const r = await wrapper("echo bootstrap ran", () =>
            setTimeout(() => fs.writeFileSync(path.join(dir, "exited"), "28\n"), 500),
        );
        assert.strictEqual(r.code, 0);
        assert.doesNotMatch(r.stdout, /bootstrap ran/);
        assert.match(r.stderr, /the agent exited \(28\) without starting a job here; nothing to run/);
        assert.ok(Date.now() - started < 3_000);
    });

    it("stops soon after the agent exited when its bootstrap does not end", async () => {
        await agentRunsJob({});
        const started = Date.now();
        const r = await wrapper(`: > ${path.join(dir, "waiting")}; while :; do sleep 0.2; done`, () => {
            void until(path.join(dir, "waiting")).then(() => fs.writeFileSync(path.join(dir, "exited"), "0\n"));
        });
        assert.strictEqual(r.code, 0);
        assert.match(r.stderr, /the agent exited \(0\) and this container's bootstrap has not: stopping/);
        assert.ok(Date.now() - started < 8_000, "within the wrapper's grace after the agent's exit");
    });

    it("keeps running on the pod's SIGTERM: the agent cancels the job through its socket", async () => {
        await agentRunsJob({});
        let pid = 0;
        const ready = path.join(dir, "ready");
        const r = wrapper(
            `trap 'echo bootstrap got TERM' TERM; : > ${ready}; i=0; while [ $i -lt 15 ]; do sleep 0.1; i=$((i+1)); done; echo finished normally`,
            (p) => (pid = p),
        );
        await until(ready);
        process.kill(pid, "SIGTERM");
        const done = await r;
        assert.match(done.stdout, /^finished normally$/m);
        assert.doesNotMatch(done.stdout, /bootstrap got TERM/);
        assert.match(done.stderr, /the pod is stopping: the agent cancels the job/);
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
        if (spawnSync("git", ["--version"]).status !== 0 || spawnSync("unshare", ["-m", "true"]).status !== 0)
            this.skip();
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitcred-"));
        file = path.join(dir, "git-credentials");
        fs.writeFileSync(file, "https://bot:s3cret@git.example.com\n", { mode: 0o400 });
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** git with `helper`, the credentials directory mounted read-only as a Secret volume is (even root cannot write). */
    const gitWith = (helper: string, args: string[], input: string) =>
        spawnSync(
            "unshare",
            [
                "-m",
                "sh",
                "-c",
                `mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && h="$1" && shift && exec git -c "credential.helper=$h" "$@"`,
                dir,
                helper,
                ...args,
            ],
            {
                input,
                encoding: "utf8",
                env: { ...process.env, GIT_TERMINAL_PROMPT: "0", HOME: os.tmpdir() },
            },
        );
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
        const stock = gitWith(
            `store --file=${file}`,
            ["credential", "approve"],
            "protocol=https\nhost=git.example.com\nusername=bot\npassword=new\n\n",
        );
        assert.match(stock.stderr, /unable to get credential storage lock/);
    });
});

describe("agentImageVersion: the buildkite-agent version an image's tag names", () => {
    const table: [string, number[] | undefined, boolean][] = [
        ["buildkite/agent:3.138.3", [3, 138, 3], true],
        ["buildkite/agent:3.133.0", [3, 133, 0], true],
        ["buildkite/agent:3.132.9", [3, 132, 9], false],
        ["buildkite/agent:3.120.0", [3, 120, 0], false],
        ["public.ecr.aws/buildkite/agent:v3.99.1-ubuntu-22.04", [3, 99, 1], false],
        ["buildkite/agent:3.138.3-ubuntu-24.04", [3, 138, 3], true],
        ["scaledkite.local/buildkite-agent:3.138.3", [3, 138, 3], true],
        ["buildkite/agent:3.140", [3, 140, 0], true],
        ["buildkite/agent:latest", undefined, true],
        ["buildkite/agent:3", undefined, true],
        ["buildkite/agent@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", undefined, true],
        ["example.com/ci/agent:1.0.0", undefined, true],
        ["registry.local:5000/buildkite/agent:3.100.0", [3, 100, 0], false],
    ];
    for (const [image, version, accepted] of table) {
        it(`${image}: ${version ? version.join(".") : "no version"}, ${accepted ? "accepted" : `older than ${MIN_AGENT_VERSION.join(".")}`}`, () => {
            const v = agentImageVersion(image);
            assert.deepStrictEqual(v, version);
            assert.strictEqual(v === undefined || compareVersions(v, MIN_AGENT_VERSION) >= 0, accepted);
        });
    }
});
