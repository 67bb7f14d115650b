/**
 * Pipelines written for agent-stack-k8s, run unchanged on the real node through the pipeline command
 * (k8s/local/pipelineRun.ts, what `npm run local-cluster -- pipeline FILE` runs): our own pipelines
 * in test/fixtures/pipelines, one for each of the peer's integration fixtures named in the README's
 * compatibility table (agent-stack-k8s v0.47.0, internal/integration/fixtures and
 * integration_test.go), each with the outcome the peer's tests expect of theirs.
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { type ClusterState } from "../../k8s/local/cluster";
import { type JobOutcome, runPipeline } from "../../k8s/local/pipelineRun";
import { parseStackConfig } from "../../scheduler/config/config";
import type { StackConfig } from "../../scheduler/config/types";
import { rawConfig } from "../helpers/builders";
import { deleteNamespace, SMALL_WORKERS } from "../helpers/deploy";
import { adminConfig, k8sClient, localClusterWithNode } from "../helpers/localCluster";

const FIXTURES = path.join(__dirname, "..", "fixtures", "pipelines");
const RUN = Math.random().toString(36).slice(2, 7);

/** What each pipeline must do: every job's result, and lines its logs (or refusal) must show. */
const EXPECTED: [string, JobOutcome["result"][], RegExp[], RegExp[]?][] = [
    ["helloworld", ["passed"], [/this is the checked-out README/]],
    ["image-attribute", ["passed", "passed"], [/^1\.\d+\.\d+$/m, /ruby \d+\.\d+/]],
    ["mountain", ["passed"], [/PEAK is chimborazo/]],
    ["podspecpatch-step", ["passed"], [/PEAK is illimani/]],
    ["podspecpatch-command-step", ["passed"], [/off to la paz/], [/off to cusco/]],
    ["sidecars", ["passed"], [/Welcome to nginx!/]],
    ["skip-checkout", ["passed"], [/no-checkout-here/], [/Preparing working directory|git clone/]],
    ["interposer-buildkite", ["passed"], [/^first line$/m, /^second line$/m], [/first line echo second line/]],
    ["interposer-vector", ["passed"], [/^first line$/m, /^second line$/m]],
    ["parallel", ["passed", "passed", "passed", "passed"], [/part 0 of 4/, /part 3 of 4/]],
    ["env", ["passed"], [/job id: present/]],
    ["secretref", ["passed", "passed"], [/as 0/, /as 1000/]],
    [
        "invalid-image-name",
        ["refused"],
        [
            /the step's plugins\.kubernetes\.podSpec\.containers\[0\]\.image "buildkite\/agent:latest and then some words" is not a valid image reference \(invalid reference format/,
        ],
    ],
    ["unknown-plugin", ["failed"], [/no-such-plugin/]],
    ["resource-class", ["passed"], [/memory limit is 512Mi/, /cpu limit is 500m/]],
    ["podtemplate", ["passed"], [/kunanyi is a mountain/]],
    ["podspecpatch-agent", ["refused"], [/podSpecPatch\.containers\[0\] changes the command of the agent container/]],
    [
        "invalid",
        ["refused"],
        [/refused by the Kubernetes API server: .*volumeMounts\[\d+\]\.name: Not found: "no-such-volume"/],
    ],
    ["invalid2", ["refused"], [/refused by the Kubernetes API server: .*cannot unmarshal number/]],
    ["artifact-upload-failed-job", ["failed"], [/written\.txt/]],
    ["jobactivedeadlineseconds", ["failed"], []],
];

describe("agent-stack-k8s pipelines, unchanged, on the real node (pipeline command)", function () {
    let state: ClusterState;
    let config: StackConfig;
    let repo: string;

    before(async function () {
        state = await localClusterWithNode(this);
        config = parseStackConfig(
            rawConfig({
                namespace: `pipelines-${RUN}`,
                stepShape: "plugin",
                ...SMALL_WORKERS,
                terminationGracePeriodSeconds: 20,
                backoffLimit: 0,
                resourceClasses: {
                    test: {
                        resources: {
                            requests: { cpu: "10m", memory: "64Mi" },
                            limits: { cpu: "500m", memory: "512Mi" },
                        },
                    },
                },
            }),
        );
        // The repository every job checks out (the peer's pipelines read its README).
        repo = fs.mkdtempSync(path.join(os.tmpdir(), "pipeline-repo-"));
        fs.writeFileSync(path.join(repo, "README.md"), "this is the checked-out README\n");
        fs.writeFileSync(path.join(repo, "NOTICE.md"), "notice\n");
        const git = (...args: string[]) =>
            assert.strictEqual(
                spawnSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.com", ...args], { cwd: repo })
                    .status,
                0,
            );
        git("init", "-q", "-b", "main");
        git("add", ".");
        git("commit", "-q", "-m", "initial");
    });
    after(async function () {
        this.timeout(60_000);
        if (repo) fs.rmSync(repo, { recursive: true, force: true });
        if (state && config) await deleteNamespace(state, config.namespace);
    });

    for (const [name, results, shows, hides = []] of EXPECTED) {
        it(`${name}: ${results.join(", ")}`, async function () {
            this.timeout(300_000);
            const run = await runPipeline({
                state,
                config,
                stackName: "pipelines",
                text: fs.readFileSync(path.join(FIXTURES, `${name}.yml`), "utf8"),
                repo,
                objects: [
                    {
                        apiVersion: "v1",
                        kind: "Secret",
                        metadata: { name: "pipeline-git-env" },
                        stringData: { GIT_TRACE: "0" },
                    },
                    {
                        apiVersion: "v1",
                        kind: "PodTemplate",
                        metadata: { name: "pipeline-pod-template" },
                        template: {
                            spec: {
                                containers: [
                                    {
                                        name: "templated",
                                        image: "alpine:latest",
                                        env: [{ name: "PEAK", value: "kunanyi" }],
                                    },
                                ],
                            },
                        },
                    },
                ],
                timeoutMs: 240_000,
            });
            assert.ok(!("error" in run), JSON.stringify(run));
            const said = run.outcomes
                .map((o) => `--- ${o.job.label}: ${o.result} ${o.exitStatus ?? ""} ${o.reason ?? ""}\n${o.log}`)
                .join("\n");
            assert.deepStrictEqual(
                run.outcomes.map((o) => o.result),
                results,
                said.slice(-4000),
            );
            for (const re of shows) assert.match(said, re, said.slice(-4000));
            for (const re of hides) assert.doesNotMatch(said, re);
            if (name === "artifact-upload-failed-job")
                assert.ok(
                    run.outcomes[0].artifacts.includes("written.txt"),
                    "a failed job's artifacts are still uploaded",
                );
            if (name === "helloworld") {
                const upload = [
                    ...run.outcomes[0].log.matchAll(/Uploading artifact|Found 1 files that match "README.md"/g),
                ];
                assert.ok(upload.length > 0, "the second container uploads README.md as an artifact");
                const pods = await adminConfig(state)
                    .makeApiClient(k8sClient().CoreV1Api)
                    .listNamespacedPod({ namespace: config.namespace, labelSelector: "pipeline-label=yes-please" });
                assert.ok(pods.items.length > 0, "the step's metadata labels its pod");
                assert.strictEqual(pods.items[0].metadata?.annotations?.["pipeline-annotation"], "kept");
            }
        });
    }
});
