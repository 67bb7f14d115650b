/** `scaledkite explain`'s pure parts; the real node shows it on real workers (test/integration/realNode.test.ts). */
import * as assert from "assert";
import { run } from "../../scheduler/cli/cli";
import { explainWorker, jobUuidOf } from "../../scheduler/cli/explain";
import { PROJECT_ROOT } from "../helpers/pulumiProgram";

const UUID = "9e6c3f19-4fdb-4e8e-b925-28cd7504e17f";

describe("explain", () => {
    const targets: [string, string, string | undefined][] = [
        ["a UUID", UUID, UUID],
        ["a UUID in capitals", UUID.toUpperCase(), UUID],
        ["a build page URL with the job anchor", `https://buildkite.com/acme/app/builds/7#${UUID}`, UUID],
        ["a job URL", `https://buildkite.com/acme/app/builds/7/jobs/${UUID}`, UUID],
        ["a build URL without a job", "https://buildkite.com/acme/app/builds/7", undefined],
    ];
    for (const [name, text, want] of targets)
        it(`finds the job in ${name}`, () => assert.strictEqual(jobUuidOf(text), want));

    it("says where to look when the stack has no worker for the job", () => {
        const lines = explainWorker({
            jobUuid: UUID,
            namespace: "ci",
            jobName: `buildkite-agent-${UUID}`,
            pods: [],
            events: [],
        });
        assert.match(lines[0], new RegExp(`^job ${UUID}: no worker \\(no Job ci/buildkite-agent-${UUID}\\)$`));
        assert.ok(
            lines.some((l) => l.includes(`"jobUuid":"${UUID}"`)),
            "the log line to search for",
        );
    });

    it("refuses a target without a job UUID with a one-line usage error (exit 2)", async () => {
        const err: string[] = [];
        const code = await run(["explain", "https://buildkite.com/acme/app/builds/7"], {
            out: () => {},
            err: (l) => err.push(l),
            readStdin: () => "",
            cwd: PROJECT_ROOT,
            env: {},
        });
        assert.strictEqual(code, 2);
        assert.deepStrictEqual(err.length, 1);
        assert.match(err[0], /holds no job UUID: pass the job's UUID or its Buildkite URL/);
    });

    it("says so when the cluster cannot be reached (exit 1: worth retrying)", async function () {
        this.timeout(30_000);
        const fs = require("fs") as typeof import("fs");
        const os = require("os") as typeof import("os");
        const path = require("path") as typeof import("path");
        const net = require("net") as typeof import("net");
        const port = await new Promise<number>((resolve) => {
            const srv = net.createServer().listen(0, "127.0.0.1", () => {
                const p = (srv.address() as { port: number }).port;
                srv.close(() => resolve(p));
            });
        });
        const kubeconfig = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "explain-")), "config");
        fs.writeFileSync(
            kubeconfig,
            [
                "apiVersion: v1",
                "kind: Config",
                "current-context: c",
                `clusters: [{name: c, cluster: {server: 'https://127.0.0.1:${port}'}}]`,
                "contexts: [{name: c, context: {cluster: c, user: u}}]",
                "users: [{name: u, user: {token: t}}]",
            ].join("\n"),
        );
        const err: string[] = [];
        const code = await run(["explain", UUID, "--kubeconfig", kubeconfig], {
            out: () => {},
            err: (l) => err.push(l),
            readStdin: () => "",
            cwd: PROJECT_ROOT,
            env: {},
        });
        assert.strictEqual(code, 1, err.join("\n"));
        assert.match(err[0], /^failed: reading the worker of job \S+ in buildkite: .*(cannot reach|ECONNREFUSED)/);
        assert.strictEqual(err.length, 1);
    });
});
