/**
 * `npm run demo` start to finish on the suite's cluster: the demo uses a cluster that runs, shows a
 * real job's log from the real node, and leaves that cluster running with its own namespace removed.
 */
import * as assert from "assert";
import { spawn, spawnSync } from "child_process";
import * as path from "path";
import { type ClusterState, status } from "../../k8s/local/cluster";
import { adminConfig, eventually, k8sClient, localCluster } from "../helpers/localCluster";
import { PROJECT_ROOT } from "../helpers/pulumiProgram";

describe("npm run demo", function () {
    let state: ClusterState;
    before(async function () {
        state = await localCluster(this);
    });

    it("runs real jobs on the real node, and leaves the cluster it did not start running", async function () {
        this.timeout(300_000);
        const r = spawnSync("npm", ["run", "--silent", "demo"], {
            cwd: PROJECT_ROOT,
            encoding: "utf8",
            env: process.env,
        });
        assert.strictEqual(r.status, 0, r.stderr + r.stdout);
        assert.match(r.stdout, /-> created {2}buildkite\/buildkite-agent-9e6c3f19-4fdb-4e8e-b925-28cd7504e17f/);
        assert.match(r.stdout, /-> exists {3}buildkite\/buildkite-agent-9e6c3f19/);
        assert.match(r.stdout, /-> ignored {2}.*queue=gpu/);
        assert.match(r.stdout, /-> invalid {2}\(detail.job.uuid must be a UUID/);
        assert.strictEqual((r.stdout.match(/: Job Complete/g) ?? []).length, 2, r.stdout);
        if (state.node) {
            assert.strictEqual((r.stdout.match(/: finished, exit status 0/g) ?? []).length, 2, r.stdout);
            assert.match(r.stdout, /\| buildkite-agent version 3\.138\.3/, "the image built in dind ran");
            assert.match(r.stdout, /\| hello from buildkite-agent-0b7d5c1e/);
        }
        assert.doesNotMatch(r.stdout, /local cluster stopped/);
        assert.ok(status().running, "the suite's cluster still runs");
        const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
        await eventually(
            "the demo's namespace to go",
            async () =>
                core.readNamespace({ name: "buildkite" }).then(
                    () => undefined,
                    () => true,
                ),
            // A namespace goes once its pods are gone: on a machine busy with the rest of the suite, minutes.
            180_000,
        );
    });

    it("Ctrl-C stops what the demo started (its namespace), not the cluster it did not start", async function () {
        this.timeout(300_000);
        const child = spawn(
            process.execPath,
            ["-r", "ts-node/register/transpile-only", path.join(PROJECT_ROOT, "k8s", "local", "demo.ts")],
            { cwd: PROJECT_ROOT, env: process.env },
        );
        let out = "";
        child.stdout.on("data", (d) => (out += d));
        const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
        await eventually(
            "the demo to reach its events",
            async () => (/^3\. Events/m.test(out) ? true : undefined),
            90_000,
        );
        child.kill("SIGINT");
        assert.strictEqual(await exited, 130, out);
        assert.match(out, /SIGINT: stopping what the demo started/);
        assert.ok(status().running, "the suite's cluster still runs");
        const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
        await eventually(
            "the demo's namespace to go",
            async () =>
                core.readNamespace({ name: "buildkite" }).then(
                    () => undefined,
                    () => true,
                ),
            // A namespace goes once its pods are gone: on a machine busy with the rest of the suite, minutes.
            180_000,
        );
    });
});
