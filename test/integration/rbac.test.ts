/**
 * The Role the program declares, on the real API server, for the scheduler's identity as EKS sees it
 * (an IAM role whose access entry puts it in the scheduler group): worker Jobs in its namespace, and
 * nothing more.
 */
import * as assert from "assert";
import { SCHEDULER_IDENTITY, STRANGER_IDENTITY } from "../../k8s/local/awsIdentities";
import { ClusterState } from "../../k8s/local/cluster";
import { KubernetesError } from "../../scheduler/errors";
import { bearerJobClient } from "../../scheduler/kube";
import { TokenCache } from "../../scheduler/eksToken";
import { createEventHandler } from "../../scheduler/handler";
import { anEvent } from "../helpers/builders";
import { creatorAs, deleteNamespace, deployStack, DeployedStack, kubeConfigAs } from "../helpers/deploy";
import { adminConfig, k8sClient, localCluster } from "../helpers/localCluster";

async function status(call: () => Promise<unknown>): Promise<number> {
    try {
        await call();
        return 200;
    } catch (e) {
        return (e as { code?: number }).code ?? -1;
    }
}

describe("scheduler RBAC on a real API server", function () {
    let state: ClusterState;
    let stack: DeployedStack;
    const elsewhere = "rbac-elsewhere";
    before(async function () {
        state = await localCluster(this);
        stack = await deployStack(state, "rbac-workers");
        await adminConfig(state).makeApiClient(k8sClient().CoreV1Api).createNamespace({ body: { metadata: { name: elsewhere } } })
            .catch((e) => { if (e.code !== 409) throw e; });
    });
    after(async function () {
        if (state) for (const ns of ["rbac-workers", "rbac-elsewhere"]) await deleteNamespace(state, ns);
    });

    it("lets the scheduler create, get, list and delete worker Jobs in its namespace", async () => {
        const handle = createEventHandler(stack.settings, creatorAs(state), () => {});
        const event = anEvent().build();
        assert.strictEqual((await handle(event)).outcome, "created");
        const batch = (await kubeConfigAs(state, SCHEDULER_IDENTITY)).makeApiClient(k8sClient().BatchV1Api);
        const name = `buildkite-agent-${event.detail.job.uuid}`;
        assert.strictEqual(await status(() => batch.readNamespacedJob({ name, namespace: stack.namespace })), 200);
        assert.strictEqual(await status(() => batch.listNamespacedJob({ namespace: stack.namespace })), 200);
        assert.strictEqual(await status(() => batch.deleteNamespacedJob({ name, namespace: stack.namespace })), 200);
    });

    it("denies the scheduler everything else: Secrets, pods, deletes, other namespaces", async () => {
        const kc = await kubeConfigAs(state, SCHEDULER_IDENTITY);
        const core = kc.makeApiClient(k8sClient().CoreV1Api);
        const batch = kc.makeApiClient(k8sClient().BatchV1Api);
        const ns = stack.namespace;
        const denied: [string, () => Promise<unknown>][] = [
            ["read the agent token Secret", () => core.readNamespacedSecret({ name: "scaledkite-agent-token", namespace: ns })],
            ["list Secrets", () => core.listNamespacedSecret({ namespace: ns })],
            ["create a pod directly", () => core.createNamespacedPod({ namespace: ns, body: { metadata: { name: "p" }, spec: { containers: [{ name: "c", image: "x" }] } } })],
            ["delete a Job elsewhere", () => batch.deleteNamespacedJob({ name: "anything", namespace: elsewhere })],
            ["change a Job", () => batch.patchNamespacedJob({ name: "anything", namespace: ns, body: [] })],
            ["list Jobs in another namespace", () => batch.listNamespacedJob({ namespace: elsewhere })],
            ["list Jobs cluster-wide", () => batch.listJobForAllNamespaces()],
            ["list namespaces", () => core.listNamespace()],
        ];
        for (const [what, call] of denied) assert.strictEqual(await status(call), 403, `the scheduler may not ${what}`);
    });

    it("cannot create a worker Job in another namespace, and says what to check", async () => {
        const misdirected = { ...stack.settings, namespace: elsewhere };
        await assert.rejects(createEventHandler(misdirected, creatorAs(state), () => {})(anEvent().build()), (e: KubernetesError) => {
            assert.strictEqual(e.status, 403);
            assert.strictEqual(e.retryable, false);
            assert.match(e.message, /check the scheduler's RBAC Role and EKS access entry/);
            return true;
        });
    });

    it("refuses an identity with no access entry group", async () => {
        const handle = createEventHandler(stack.settings, creatorAs(state, STRANGER_IDENTITY), () => {});
        await assert.rejects(handle(anEvent().build()), (e: KubernetesError) => e.status === 403 && !e.retryable);
    });

    it("treats a token the server does not accept as worth retrying with a new one", async () => {
        let signed = 0;
        const tokens = new TokenCache(async () => {
            signed++;
            return { token: `k8s-aws-v1.${Buffer.from("https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity").toString("base64url")}`, expiresAt: new Date(Date.now() + 600_000) };
        });
        const creator = bearerJobClient(state.server, require("fs").readFileSync(state.caFile).toString("base64"), tokens);
        const handle = createEventHandler(stack.settings, creator, () => {});
        await assert.rejects(handle(anEvent().build()), (e: KubernetesError) => e.status === 401 && e.retryable);
        await assert.rejects(handle(anEvent().build()), (e: KubernetesError) => e.status === 401);
        assert.strictEqual(signed, 2, "the refused token was dropped and a new one signed");
    });
});
