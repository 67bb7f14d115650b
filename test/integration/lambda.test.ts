/**
 * The Lambda code exactly as Pulumi serializes it (the `__index.js` of the function's archive),
 * loaded in a fresh Node 24 process and invoked with events: it signs an EKS token from its AWS
 * credentials and creates the worker Job on the real API server.
 */
import * as assert from "assert";
import * as fs from "fs";
import { ClusterState } from "../../k8s/local/cluster";
import { anEvent } from "../helpers/builders";
import { deleteNamespace, deployStack, DeployedStack } from "../helpers/deploy";
import { invokeLambda, writeLambdaPackage } from "../helpers/lambdaPackage";
import { adminConfig, k8sClient, localCluster } from "../helpers/localCluster";
import { lambdaCode } from "../helpers/pulumiProgram";

describe("the serialized Lambda on a real API server", function () {
    let state: ClusterState;
    let stack: DeployedStack;
    let dir: string;
    before(async function () {
        state = await localCluster(this);
        stack = await deployStack(state, "lambda-workers", { queues: { dynamic: {}, "docker-free": { dind: false } } });
        dir = writeLambdaPackage(await lambdaCode(stack.run));
    });
    after(async function () {
        if (state) await deleteNamespace(state, "lambda-workers");
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it("runs on Node 24", () => {
        assert.match(process.version, /^v24\./, "the project's pinned Node runs the tests and the Lambda");
    });

    it("creates one worker Job per event, treats a duplicate as done, and ignores what is not its own", async () => {
        const job = anEvent().queue("docker-free").build();
        const foreign = anEvent().queue("gpu").build();
        const finished = anEvent().detailType("Job Finished").build();
        const { results, logs } = await invokeLambda(dir, [job, job, foreign, finished, { hello: "world" }]);
        assert.deepStrictEqual(results.map((r) => r.ok), [true, true, true, true, true], JSON.stringify(results));
        const decisions = logs.map((l) => JSON.parse(l.slice(l.indexOf("{"))));
        assert.deepStrictEqual(decisions.map((d) => d.outcome), ["created", "exists", "ignored", "ignored", "invalid"]);
        assert.strictEqual(decisions[0].job, `lambda-workers/buildkite-agent-${job.detail.job.uuid}`);
        assert.strictEqual(decisions[0].queue, "docker-free");
        assert.match(decisions[2].reason, /queue=gpu, which this stack does not serve/);
        assert.match(decisions[4].reason, /no "detail-type"/);
        for (const d of decisions) assert.strictEqual(typeof d.ms, "number");

        const batch = adminConfig(state).makeApiClient(k8sClient().BatchV1Api);
        const created = await batch.readNamespacedJob({ name: `buildkite-agent-${job.detail.job.uuid}`, namespace: "lambda-workers" });
        assert.strictEqual(created.spec!.template.spec!.initContainers, undefined, "the docker-free queue's settings were used");
        const all = await batch.listNamespacedJob({ namespace: "lambda-workers" });
        assert.strictEqual(all.items.length, 1, "the foreign and finished events made no Job");
    });

    it("throws what is worth retrying, so EventBridge and Lambda retry it", async () => {
        const { results } = await invokeLambda(dir, [anEvent().build()], { AWS_SECRET_ACCESS_KEY: "not-the-right-key" });
        assert.strictEqual(results[0].ok, false);
        assert.strictEqual(results[0].retryable, true);
        assert.match(results[0].error!, /unauthorized/);
    });

    it("fails with a clear message, not a crash, without AWS credentials", async () => {
        const { results } = await invokeLambda(dir, [anEvent().build()], { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "" });
        assert.strictEqual(results[0].ok, false);
        assert.match(results[0].error!, /no AWS credentials/);
    });
});
