/**
 * Every variant of the worker Job the scheduler can produce, against the real API server: accepted,
 * given its pod by the Job controller, run to completion, and removed by its TTL.
 */
import * as assert from "assert";
import type { V1Job } from "@kubernetes/client-node";
import { ClusterState } from "../../k8s/local/cluster";
import { createEventHandler } from "../../scheduler/handler";
import { anEvent } from "../helpers/builders";
import { creatorAs, deleteNamespace, deployStack, DeployedStack } from "../helpers/deploy";
import { adminConfig, eventually, k8sClient, localCluster } from "../helpers/localCluster";

interface Variant { name: string; config: Record<string, unknown> }

const scheduling = {
    nodeSelector: { "kubernetes.io/os": "linux" },
    tolerations: [{ key: "buildkite", operator: "Exists", effect: "NoSchedule" }],
    resources: { agent: { requests: { cpu: "250m", memory: "256Mi" }, limits: { memory: "1Gi" } }, dind: { requests: { cpu: "100m" }, limits: { cpu: "2" } } },
    agentTags: ["os=linux"], labels: { team: "platform" }, annotations: { "example.com/owner": "ci" },
    terminationGracePeriodSeconds: 30, backoffLimit: 0,
};

/** dind x optional secrets x scheduling settings: every combination the config allows. */
const variants: Variant[] = [];
for (const dind of [true, false]) {
    for (const secrets of [false, true]) {
        for (const tuned of [false, true]) {
            variants.push({
                name: `dind ${dind ? "on" : "off"}, ${secrets ? "env + git credentials" : "token only"}, ${tuned ? "tuned scheduling" : "default scheduling"}`,
                config: {
                    dind, ttlSecondsAfterFinished: 1, activeDeadlineSeconds: 600, jobPrefix: "bk-",
                    ...(secrets ? { env: { GITHUB_TOKEN: "ghp_local" }, gitCredentials: "https://x:y@github.com" } : {}),
                    ...(tuned ? scheduling : {}),
                },
            });
        }
    }
}

describe("worker Jobs on a real API server", function () {
    let state: ClusterState;
    const stacks: DeployedStack[] = [];
    before(async function () {
        state = await localCluster(this);
        for (const [i, v] of variants.entries()) stacks.push(await deployStack(state, `variant-${i}`, v.config));
    });
    after(async function () {
        this.timeout(60_000);
        if (state) for (const s of stacks) await deleteNamespace(state, s.namespace);
    });

    variants.forEach((variant, i) => {
        it(variant.name, async function () {
            this.timeout(120_000);
            const stack = stacks[i];
            const logs: string[] = [];
            const handle = createEventHandler(stack.settings, creatorAs(state), (l) => logs.push(l));
            const event = anEvent().build();
            const decision = await handle(event);
            assert.strictEqual(decision.outcome, "created", logs.join("\n"));

            const kc = adminConfig(state);
            const k8s = k8sClient();
            const batch = kc.makeApiClient(k8s.BatchV1Api);
            const core = kc.makeApiClient(k8s.CoreV1Api);
            const name = `bk-${event.detail.job.uuid}`;
            const stored: V1Job = await batch.readNamespacedJob({ name, namespace: stack.namespace });
            assert.strictEqual(stored.spec!.template.spec!.containers[0].env!.find((e) => e.name === "BUILDKITE_AGENT_ACQUIRE_JOB")!.value, event.detail.job.uuid);
            if (variant.config.dind) assert.strictEqual(stored.spec!.template.spec!.initContainers![0].restartPolicy, "Always", "the server kept the native sidecar");

            const pods = await eventually("the Job controller to create the pod", async () => {
                const list = await core.listNamespacedPod({ namespace: stack.namespace, labelSelector: `job-name=${name}` });
                return list.items.length ? list.items : undefined;
            });
            assert.strictEqual(pods.length, 1, "one pod per Buildkite job");
            assert.strictEqual(pods[0].metadata!.labels!["buildkite.com/job-uuid"], event.detail.job.uuid);

            await eventually("the Job to complete", async () => {
                const j = await batch.readNamespacedJob({ name, namespace: stack.namespace });
                return j.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True") ? true : undefined;
            });
            await eventually("the TTL to remove the Job and its pod", async () => {
                const jobs = await batch.listNamespacedJob({ namespace: stack.namespace, labelSelector: `buildkite.com/job-uuid=${event.detail.job.uuid}` });
                const left = await core.listNamespacedPod({ namespace: stack.namespace, labelSelector: `job-name=${name}` });
                return jobs.items.length === 0 && left.items.length === 0 ? true : undefined;
            }, 90_000);
        });
    });
});
