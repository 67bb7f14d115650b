/**
 * Every variant of the worker Job the scheduler can produce, against the real API server: accepted,
 * given its pod by the Job controller, run to completion, and removed by its TTL. The dind x secrets
 * x scheduling variants run on the real node, where the real agent runs a job from the agent API
 * stand-in in each; the per-queue shapes (2 CPUs, arm64, Fargate, other service accounts) fit no node
 * of this machine and run on the stand-in node.
 */
import * as assert from "assert";
import type { V1Job } from "@kubernetes/client-node";
import { type ClusterState } from "../../k8s/local/cluster";
import { createEventHandler } from "../../scheduler/schedule/lambda";
import { AgentApiStandIn } from "../../k8s/local/agentApiStandIn";
import { LOCAL_IMAGES, POD_GATEWAY_IP } from "../../k8s/local/node";
import { STAND_IN_SCHEDULING } from "../../k8s/local/podRunner";
import { anEvent } from "../helpers/builders";
import { creatorAs, deleteNamespace, deployStack, type DeployedStack, LOCAL_WORKER_IMAGES } from "../helpers/deploy";
import { adminConfig, eventually, k8sClient, localCluster } from "../helpers/localCluster";

interface Variant {
    name: string;
    config: Record<string, unknown>;
}

const scheduling = {
    nodeSelector: { "kubernetes.io/os": "linux" },
    tolerations: [{ key: "buildkite", operator: "Exists", effect: "NoSchedule" }],
    resources: {
        command: { requests: { cpu: "250m", memory: "256Mi" }, limits: { memory: "1Gi" } },
        dind: { requests: { cpu: "100m" }, limits: { cpu: "2" } },
    },
    agentTags: ["os=linux"],
    labels: { team: "platform" },
    annotations: { "example.com/owner": "ci" },
    terminationGracePeriodSeconds: 30,
    backoffLimit: 0,
};

/** dind mode x optional secrets x scheduling settings: every combination the config allows, each admitted by the stack's admission policy. */
const variants: Variant[] = [];
for (const dind of ["privileged", "rootless", "none"]) {
    for (const secrets of [false, true]) {
        for (const tuned of [false, true]) {
            variants.push({
                name: `dind ${dind}, ${secrets ? "env + git credentials" : "token only"}, ${tuned ? "tuned scheduling" : "default scheduling"}`,
                config: {
                    dind,
                    ttlSecondsAfterFinished: 3,
                    activeDeadlineSeconds: 600,
                    jobPrefix: "bk-",
                    ...(secrets
                        ? { env: { GITHUB_TOKEN: "ghp_local" }, gitCredentials: "https://x:y@github.com" }
                        : {}),
                    ...(tuned ? scheduling : {}),
                },
            });
        }
    }
}

describe("worker Jobs on a real API server", function () {
    let state: ClusterState;
    let api: AgentApiStandIn | undefined;
    const stacks: DeployedStack[] = [];
    before(async function () {
        state = await localCluster(this);
        if (state.node) api = await new AgentApiStandIn().start(POD_GATEWAY_IP);
        for (const [i, v] of variants.entries()) {
            const real = api
                ? {
                      ...LOCAL_WORKER_IMAGES,
                      ...(v.config.dind === "rootless" ? { dindImage: LOCAL_IMAGES.dindRootless } : {}),
                      agentToken: api.registrationToken,
                      env: { ...(v.config.env as object | undefined), BUILDKITE_AGENT_ENDPOINT: api.endpoint },
                  }
                : {};
            stacks.push(await deployStack(state, `variant-${i}`, { ...v.config, ...real }, api ? "real" : "stand-in"));
        }
    });
    after(async function () {
        this.timeout(60_000);
        await api?.stop();
        if (state) for (const s of stacks) await deleteNamespace(state, s.namespace);
    });

    variants.forEach((variant, i) => {
        it(variant.name, async function () {
            this.timeout(300_000);
            const event = anEvent().build();
            const uuid = event.detail.job.uuid;
            const dind = variant.config.dind !== "none";
            api?.addJob(uuid, {
                queue: "dynamic",
                command: dind ? "docker version --format 'docker {{.Server.Version}}'" : "echo no docker here",
            });
            await runToCompletion(state, stacks[i], event, "bk-", dind);
            if (api) {
                const job = api.jobs.get(uuid)!;
                assert.strictEqual(job.exitStatus, "0", api.text(uuid));
                assert.match(api.text(uuid), dind ? /^docker 20\.10\.24/m : /^no docker here$/m);
            }
        });
    });

    describe("per-queue worker shapes", () => {
        const queues: Record<string, unknown> = {
            // Fargate picks its own node, so no nodeSelector; the patch takes it to the stand-in node here.
            "fargate-small": {
                fargate: true,
                dind: false,
                nodeSelector: {},
                tolerations: [],
                podSpecPatch: {
                    nodeSelector: STAND_IN_SCHEDULING.nodeSelector,
                    tolerations: STAND_IN_SCHEDULING.tolerations,
                },
            },
            "arm-affinity": {
                affinity: {
                    nodeAffinity: {
                        preferredDuringSchedulingIgnoredDuringExecution: [
                            {
                                weight: 1,
                                preference: {
                                    matchExpressions: [
                                        { key: "kubernetes.io/arch", operator: "In", values: ["arm64"] },
                                    ],
                                },
                            },
                        ],
                    },
                },
            },
            "with-identity": {
                serviceAccountName: "builder",
                envFrom: [{ configMapRef: { name: "build-env" } }, { secretRef: { name: "npm-token" } }],
                env: { NODE_ENV: "test" },
            },
            patched: {
                dind: false,
                podSpecPatch: {
                    dnsPolicy: "Default",
                    containers: [{ name: "agent", workingDir: "/workspace" }],
                    hostAliases: [{ ip: "127.0.0.1", hostnames: ["cache.local"] }],
                },
            },
            big: {
                resources: { command: { requests: { cpu: "2", memory: "4Gi" }, limits: { memory: "8Gi" } } },
                image: "buildkite/agent:3.138.3-ubuntu-24.04",
            },
        };
        let stack: DeployedStack;
        before(async function () {
            stack = await deployStack(
                state,
                "shapes",
                {
                    queues,
                    fargateSubnetIds: ["subnet-0abc"],
                    ttlSecondsAfterFinished: 3,
                    jobPrefix: "bk-",
                    // IRSA, since Pod Identity does not reach Fargate pods.
                    ecrRegistries: [
                        "111122223333.dkr.ecr.us-east-1.amazonaws.com",
                        { registry: "444455556666.dkr.ecr.eu-west-1.amazonaws.com", push: true },
                    ],
                    workerIdentity: "irsa",
                    hooks: { environment: "#!/bin/sh\nexport FROM_HOOK=1\n" },
                    gitSshKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nlocal\n-----END OPENSSH PRIVATE KEY-----",
                    gitKnownHosts:
                        "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                },
                "stand-in",
            );
            const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
            await core
                .createNamespacedServiceAccount({ namespace: "shapes", body: { metadata: { name: "builder" } } })
                .catch(() => {});
            stacks.push(stack);
        });
        for (const queue of Object.keys(queues)) {
            it(`queue ${queue}`, async function () {
                this.timeout(120_000);
                const stored = await runToCompletion(
                    state,
                    stack,
                    anEvent().queue(queue).build(),
                    "bk-",
                    stack.settings.queues[queue].dind !== "none",
                );
                const pod = stored.spec!.template.spec!;
                if (queue === "fargate-small")
                    assert.strictEqual(
                        stored.spec!.template.metadata!.labels!["scaledkite.io/fargate-queue"],
                        "fargate-small",
                    );
                // The program's worker service account exists (the API server refuses pods of a missing one).
                assert.strictEqual(pod.serviceAccountName, queue === "with-identity" ? "builder" : "scaledkite-worker");
                assert.ok(
                    pod.volumes!.some((v) => v.configMap?.name === "scaledkite-ecr-login"),
                    "the ECR login hook is mounted",
                );
                if (queue === "patched")
                    assert.deepStrictEqual(JSON.parse(JSON.stringify(pod.hostAliases)), [
                        { ip: "127.0.0.1", hostnames: ["cache.local"] },
                    ]);
                assert.ok(pod.volumes!.some((v) => v.name === "hooks") && pod.volumes!.some((v) => v.name === "ssh"));
            });
        }
    });
});

/** Schedules `event` and follows its worker: accepted, one pod, complete, removed by its TTL. Returns the stored Job. */
async function runToCompletion(
    state: ClusterState,
    stack: DeployedStack,
    event: any,
    prefix: string,
    dind: boolean,
): Promise<V1Job> {
    const logs: string[] = [];
    const handle = createEventHandler(stack.settings, creatorAs(state), (l) => logs.push(l));
    const decision = await handle(event);
    assert.strictEqual(decision.outcome, "created", logs.join("\n"));

    const kc = adminConfig(state);
    const k8s = k8sClient();
    const batch = kc.makeApiClient(k8s.BatchV1Api);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const name = `${prefix}${event.detail.job.uuid}`;
    const stored: V1Job = await batch.readNamespacedJob({ name, namespace: stack.namespace });
    assert.strictEqual(
        stored.spec!.template.spec!.containers[0].env!.find((e) => e.name === "BUILDKITE_AGENT_ACQUIRE_JOB")!.value,
        event.detail.job.uuid,
    );
    if (dind)
        assert.deepStrictEqual(
            stored.spec!.template.spec!.containers.map((c) => c.name),
            ["agent", "command", "dind"],
            "dind starts beside the agent, in the same kubelet pass",
        );

    const pods = await eventually("the Job controller to create the pod", async () => {
        const list = await core.listNamespacedPod({ namespace: stack.namespace, labelSelector: `job-name=${name}` });
        return list.items.length ? list.items : undefined;
    });
    assert.strictEqual(pods.length, 1, "one pod per Buildkite job");
    assert.strictEqual(pods[0].metadata!.labels!["buildkite.com/job-uuid"], event.detail.job.uuid);

    // Sized for a loaded 2-core machine: a dind worker took over 60 s once in a full run (alone: about 10 s).
    await eventually(
        "the Job to complete",
        async () => {
            const j = await batch.readNamespacedJob({ name, namespace: stack.namespace });
            return j.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True") ? true : undefined;
        },
        180_000,
    );
    await eventually(
        "the TTL to remove the Job and its pod",
        async () => {
            const jobs = await batch.listNamespacedJob({
                namespace: stack.namespace,
                labelSelector: `buildkite.com/job-uuid=${event.detail.job.uuid}`,
            });
            const left = await core.listNamespacedPod({
                namespace: stack.namespace,
                labelSelector: `job-name=${name}`,
            });
            return jobs.items.length === 0 && left.items.length === 0 ? true : undefined;
        },
        90_000,
    );
    return stored;
}
