/**
 * What the API server decides about the pods steps ask for, as the scheduler's own identity (EKS
 * token -> RBAC -> the admission policy): whatever a step's plugin asks, no worker gets what no worker
 * may have; each refusal fails the Buildkite job at once (Stacks API stand-in) with the reason, and is
 * not retried. Workers go to the stand-in node: nothing here needs a container to run.
 */
import * as assert from "assert";
import { type ClusterState } from "../../k8s/local/cluster";
import { SCHEDULER_IDENTITY } from "../../k8s/local/awsIdentities";
import { startStacksApi, type StandIn } from "../../k8s/local/stacksApiStandIn";
import { stacksApi } from "../../scheduler/clients/stacksApi";
import { KUBERNETES_PLUGIN } from "../../scheduler/core/step";
import { SECRET_NAMES } from "../../scheduler/core/names";
import { createEventHandler, decide } from "../../scheduler/schedule/lambda";
import { stacksStepSource } from "../../scheduler/schedule/stepSource";
import { anEvent, newUuid } from "../helpers/builders";
import { creatorAs, deleteNamespace, deployStack, type DeployedStack, kubeConfigAs } from "../helpers/deploy";
import { eventually, k8sClient, localCluster } from "../helpers/localCluster";

const RUN = Math.random().toString(36).slice(2, 7);

describe("steps' pods on the real API server, as the scheduler", function () {
    let state: ClusterState;
    let stack: DeployedStack;
    let stacks: StandIn;

    before(async function () {
        state = await localCluster(this);
        stacks = await startStacksApi();
        stack = await deployStack(state, `steps-${RUN}`, { stepShape: "plugin", sweepInterval: 1 }, "stand-in");
        // The API server compiles a new policy within a moment; until then it admits everything.
        await eventually(
            "the policy to be in force",
            async () => {
                const d = decide(stack.settings, anEvent().uuid(newUuid()).build());
                if (d.outcome !== "schedule") throw new Error(d.reason);
                d.manifest.spec!.template.spec!.hostPID = true;
                return creatorAs(state)
                    .createJob(d.manifest)
                    .then(
                        () => undefined,
                        () => true,
                    );
            },
            20_000,
        );
    });
    after(async function () {
        this.timeout(60_000);
        await stacks?.close();
        if (state) await deleteNamespace(state, `steps-${RUN}`);
    });

    /** Schedules a job whose step asks for `plugin` (the kubernetes plugin's config). */
    async function schedule(plugin: unknown, env: Record<string, string> = {}) {
        const uuid = newUuid();
        stacks.jobs.set(uuid, {
            id: uuid,
            env: { BUILDKITE_PLUGINS: JSON.stringify([{ [KUBERNETES_PLUGIN]: plugin }]), ...env },
            command: "make",
        });
        const steps = stacksStepSource(
            stacksApi(() => stacks.token, { endpoint: stacks.endpoint }),
            "steps",
        );
        const d = await createEventHandler(stack.settings, creatorAs(state), () => {}, { steps })(
            anEvent().uuid(uuid).build(),
        );
        return { d, failed: stacks.finished.get(uuid) };
    }

    it("creates the Job a step asks for (its image, sidecar, a Secret of the namespace) as the scheduler", async () => {
        const { d, failed } = await schedule(
            {
                sidecars: [{ image: "nginx:latest" }],
                podSpec: {
                    containers: [
                        { image: "alpine:latest", command: ["true"], envFrom: [{ secretRef: { name: "team-npm" } }] },
                    ],
                },
            },
            { BUILDKITE_IMAGE: "node:22-alpine" },
        );
        assert.strictEqual(d.outcome, "created", d.reason);
        assert.strictEqual(failed, undefined);
    });

    const refused: [string, unknown, RegExp][] = [
        [
            "a hostPath volume",
            {
                podSpec: {
                    containers: [{ image: "alpine:latest" }],
                    volumes: [{ name: "h", hostPath: { path: "/" } }],
                },
            },
            /refused by the Kubernetes API server: .*hostPath/,
        ],
        [
            "the host's network",
            { podSpec: { hostNetwork: true, containers: [{ image: "alpine:latest" }] } },
            /refused by the Kubernetes API server: .*host namespaces/,
        ],
        [
            "a privileged sidecar",
            { sidecars: [{ name: "root", image: "alpine:latest", securityContext: { privileged: true } }] },
            /refused by the Kubernetes API server: .*privilege/i,
        ],
        [
            "the agent token Secret in a step's container",
            {
                podSpec: {
                    containers: [
                        { image: "alpine:latest", envFrom: [{ secretRef: { name: SECRET_NAMES.agentToken } }] },
                    ],
                },
            },
            /refused by the Kubernetes API server: .*agent token/,
        ],
        [
            "a mount of a volume that does not exist (the API server's own validation)",
            {
                podSpec: {
                    containers: [{ image: "alpine:latest", volumeMounts: [{ name: "nope", mountPath: "/x" }] }],
                },
            },
            /refused by the Kubernetes API server: .*volumeMounts\[\d+\]\.name: Not found: "nope"/,
        ],
        [
            "another service account (the queue's, held by Scaledkite)",
            { podSpecPatch: { serviceAccountName: "admin" } },
            /changes serviceAccountName/,
        ],
    ];
    for (const [name, plugin, reason] of refused)
        it(`refuses ${name}: the Buildkite job fails at once with the reason, no Job, nothing retried`, async () => {
            const { d, failed } = await schedule(plugin);
            assert.strictEqual(d.outcome, "refused", d.reason);
            assert.match(failed ?? "", /^Scaledkite could not start this job: the step's /);
            assert.match(failed ?? "", reason);
            assert.strictEqual(failed?.includes("\n"), false, "one line");
        });

    it("the scheduler may read the agent token and PodTemplates, and no other Secret", async () => {
        const core = (await kubeConfigAs(state, SCHEDULER_IDENTITY)).makeApiClient(k8sClient().CoreV1Api);
        const ns = stack.namespace;
        await core.readNamespacedSecret({ name: SECRET_NAMES.agentToken, namespace: ns });
        await assert.rejects(core.readNamespacedSecret({ name: SECRET_NAMES.env, namespace: ns }), /403|forbidden/i);
        await assert.rejects(core.readNamespacedPodTemplate({ name: "none", namespace: ns }), /404|not ?found/i);
        await assert.rejects(core.listNamespacedSecret({ namespace: ns }), /403|forbidden/i);
    });
});
