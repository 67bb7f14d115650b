/**
 * `npm run local-cluster` as a newcomer uses it: a stack's Kubernetes side on the running cluster,
 * a half-started cluster reported and stopped, Ctrl-C while it starts, and --help.
 */
import * as assert from "assert";
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { alive, type ClusterState } from "../../k8s/local/cluster";
import { startStacksApi } from "../../k8s/local/stacksApiStandIn";
import { adminConfig, eventually, k8sClient, localCluster } from "../helpers/localCluster";
import { PROJECT_ROOT } from "../helpers/pulumiProgram";

const CLI = path.join(PROJECT_ROOT, "k8s", "local", "cli.ts");

function localCli(args: string[], env: NodeJS.ProcessEnv = {}) {
    return spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", CLI, ...args], {
        cwd: PROJECT_ROOT,
        encoding: "utf8",
        env: { ...process.env, ...env },
    });
}

describe("npm run local-cluster", function () {
    let state: ClusterState;
    before(async function () {
        state = await localCluster(this);
    });

    it("--help says every command; an unknown one exits 2 with the usage", () => {
        const help = localCli(["--help"]);
        assert.strictEqual(help.status, 0);
        assert.match(help.stdout, /up \[--stack NAME\][\s\S]*down[\s\S]*status/);
        const bad = localCli(["start"]);
        assert.strictEqual(bad.status, 2);
        assert.match(bad.stderr, /unknown command "start"/);
    });

    it("up --stack dev creates what the dev stack's pulumi up creates, so `schedule` works on the cluster started by hand", async function () {
        this.timeout(120_000);
        const r = localCli(["up", "--stack", "dev"]);
        assert.strictEqual(r.status, 0, r.stderr);
        assert.match(r.stderr, /stack dev: namespace buildkite ready/);
        const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
        try {
            const secrets = (await core.listNamespacedSecret({ namespace: "buildkite" })).items
                .map((s) => s.metadata!.name)
                .sort();
            assert.deepStrictEqual(secrets, ["scaledkite-agent-token", "scaledkite-env", "scaledkite-git-credentials"]);
            const rbac = adminConfig(state).makeApiClient(k8sClient().RbacAuthorizationV1Api);
            assert.ok(
                (await rbac.listNamespacedRole({ namespace: "buildkite" })).items.some(
                    (x) => x.metadata!.name === "scaledkite-scheduler",
                ),
            );
            // The dev stack's queues take their pod from the job, which the command line reads through
            // the Stacks API (here its stand-in) with a cluster agent token.
            const event = path.join(PROJECT_ROOT, "test", "fixtures", "job-scheduled.json");
            const schedule = (env: NodeJS.ProcessEnv) =>
                new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
                    const child = spawn(
                        "npm",
                        [
                            "run",
                            "--silent",
                            "scaledkite",
                            "--",
                            "schedule",
                            "--event",
                            event,
                            "--kubeconfig",
                            state.kubeconfig,
                        ],
                        { cwd: PROJECT_ROOT, env: { ...process.env, ...env } },
                    );
                    let stdout = "";
                    let stderr = "";
                    child.stdout.on("data", (c) => (stdout += c));
                    child.stderr.on("data", (c) => (stderr += c));
                    child.on("close", (status) => resolve({ status, stdout, stderr }));
                });
            const without = await schedule({ BUILDKITE_AGENT_TOKEN: "" });
            assert.strictEqual(without.status, 2);
            assert.match(without.stderr, /set BUILDKITE_AGENT_TOKEN to a cluster agent token/);
            const stacks = await startStacksApi();
            try {
                const uuid = JSON.parse(fs.readFileSync(event, "utf8")).detail.job.uuid as string;
                stacks.jobs.set(uuid, { id: uuid, env: { BUILDKITE_COMMAND: "yarn test" }, command: "yarn test" });
                const done = await schedule({
                    BUILDKITE_AGENT_TOKEN: stacks.token,
                    BUILDKITE_AGENT_ENDPOINT: stacks.endpoint,
                });
                assert.strictEqual(done.status, 0, done.stderr);
                assert.match(done.stdout, /^(created|exists) buildkite\//);
                assert.ok(
                    stacks.requests.includes(`GET /v3/stacks/scaledkite-dev/jobs/${uuid}`),
                    stacks.requests.join(", "),
                );
            } finally {
                await stacks.close();
            }
            const missing = localCli(["up", "--stack", "nope"]);
            assert.strictEqual(missing.status, 1);
            assert.match(missing.stderr, /no stack file Pulumi.nope.yaml: name a stack of this project/);
        } finally {
            await core.deleteNamespace({ name: "buildkite" }).catch(() => {});
            await eventually(
                "namespace buildkite to go",
                async () =>
                    core.readNamespace({ name: "buildkite" }).then(
                        () => undefined,
                        () => true,
                    ),
                90_000,
            );
        }
    });

    it("status and down handle a cluster that only half started", async function () {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "half-started-"));
        const survivor = spawn("sleep", ["60"], { detached: true, stdio: "ignore" });
        const stopped = new Promise<NodeJS.Signals | null>((r) => survivor.on("exit", (_code, signal) => r(signal)));
        fs.writeFileSync(
            path.join(dir, "state.json"),
            JSON.stringify({
                processes: [
                    { name: "etcd", pid: survivor.pid, log: path.join(dir, "etcd.log") },
                    { name: "kube-apiserver", pid: 2 ** 22 + 7, log: path.join(dir, "api.log") },
                ],
            }),
        );
        const st = localCli(["status"], { SCALEDKITE_LOCAL_DIR: dir });
        assert.strictEqual(st.status, 1);
        assert.match(
            st.stdout,
            /partly running: run `npm run local-cluster -- down`, then up \(its API server never became ready\)/,
        );
        assert.doesNotMatch(st.stdout, /undefined/);
        const d = localCli(["down"], { SCALEDKITE_LOCAL_DIR: dir });
        assert.strictEqual(d.status, 0, d.stderr);
        assert.strictEqual(await stopped, "SIGTERM", "the process that did start is stopped");
        assert.ok(!fs.existsSync(dir));
    });

    it("Ctrl-C while it starts stops every process it started", async function () {
        this.timeout(120_000);
        const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "interrupted-")), "cluster");
        // Without a node: one real node per machine, and the suite's cluster has it.
        const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", CLI, "up"], {
            cwd: PROJECT_ROOT,
            env: { ...process.env, SCALEDKITE_LOCAL_DIR: dir, SCALEDKITE_LOCAL_NODE: "off" },
            stdio: "ignore",
        });
        const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
        const pids = await eventually(
            "two processes to start",
            async () => {
                try {
                    const s = JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8")) as {
                        processes: { pid: number }[];
                    };
                    return s.processes.length >= 2 ? s.processes.map((p) => p.pid) : undefined;
                } catch {
                    return undefined;
                }
            },
            60_000,
        );
        child.kill("SIGINT");
        assert.strictEqual(await exited, 130);
        await eventually(
            "its processes to stop",
            async () => (pids.every((p) => !alive(p)) ? true : undefined),
            20_000,
        );
        assert.ok(!fs.existsSync(dir), "its state is removed");
    });
});
