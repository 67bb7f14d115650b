/**
 * `npm run demo` start to finish, on a control plane of its own (its own state directory, so it
 * leaves the suite's cluster alone), and nothing left running afterwards.
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { localCluster } from "../helpers/localCluster";
import { PROJECT_ROOT } from "../helpers/pulumiProgram";

describe("npm run demo", function () {
    before(async function () {
        await localCluster(this); // skips with the other integration tests; ensures the binaries exist
    });

    it("runs start to finish and brings everything down", function () {
        this.timeout(180_000);
        const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "scaledkite-demo-")), "cluster");
        const r = spawnSync("npm", ["run", "--silent", "demo"], { cwd: PROJECT_ROOT, encoding: "utf8", env: { ...process.env, SCALEDKITE_LOCAL_DIR: dir } });
        assert.strictEqual(r.status, 0, r.stderr + r.stdout);
        assert.match(r.stdout, /-> created  buildkite\/buildkite-agent-9e6c3f19-4fdb-4e8e-b925-28cd7504e17f/);
        assert.match(r.stdout, /-> exists   buildkite\/buildkite-agent-9e6c3f19/);
        assert.match(r.stdout, /-> ignored  .*queue=gpu/);
        assert.match(r.stdout, /-> invalid  \(detail.job.uuid must be a UUID/);
        assert.strictEqual((r.stdout.match(/: Job Complete/g) ?? []).length, 2, r.stdout);
        assert.match(r.stdout, /local cluster stopped/);
        assert.ok(!fs.existsSync(dir), "its state is removed");
        const left = spawnSync("pgrep", ["-f", dir], { encoding: "utf8" });
        assert.strictEqual(left.stdout.trim(), "", "no process of the demo's cluster is left");
    });
});
