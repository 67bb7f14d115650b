/**
 * The Role the program declares, on the real API server, for the scheduler's identity as EKS sees it
 * (an IAM role whose access entry puts it in the scheduler group): worker Jobs in its namespace, and
 * nothing more.
 */
import * as assert from "assert";
import { SCHEDULER_IDENTITY, STRANGER_IDENTITY } from "../../k8s/local/awsIdentities";
import { type ClusterState } from "../../k8s/local/cluster";
import { type KubernetesError } from "../../scheduler/core/errors";
import { bearerJobClient } from "../../scheduler/clients/kube";
import { TokenCache } from "../../scheduler/clients/eksToken";
import { createEventHandler, decide } from "../../scheduler/schedule/lambda";
import { anEvent, newUuid } from "../helpers/builders";
import { creatorAs, deleteNamespace, deployStack, type DeployedStack, kubeConfigAs } from "../helpers/deploy";
import { adminConfig, eventually, k8sClient, localCluster } from "../helpers/localCluster";

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
        // Privileged dind: the policy then admits a dind sidecar, so the bypasses below that dress up as one are real tests.
        stack = await deployStack(state, "rbac-workers", { dind: "privileged" });
        await adminConfig(state)
            .makeApiClient(k8sClient().CoreV1Api)
            .createNamespace({ body: { metadata: { name: elsewhere } } })
            .catch((e) => {
                if (e.code !== 409) throw e;
            });
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
            [
                "read the agent token Secret",
                () => core.readNamespacedSecret({ name: "scaledkite-agent-token", namespace: ns }),
            ],
            ["list Secrets", () => core.listNamespacedSecret({ namespace: ns })],
            [
                "create a pod directly",
                () =>
                    core.createNamespacedPod({
                        namespace: ns,
                        body: { metadata: { name: "p" }, spec: { containers: [{ name: "c", image: "x" }] } },
                    }),
            ],
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
        await assert.rejects(
            createEventHandler(misdirected, creatorAs(state), () => {})(anEvent().build()),
            (e: KubernetesError) => {
                assert.strictEqual(e.status, 403);
                assert.strictEqual(e.retryable, false);
                assert.match(e.message, /check the scheduler's RBAC Role and EKS access entry/);
                return true;
            },
        );
    });

    describe("the ValidatingAdmissionPolicy: only worker Jobs of Scaledkite's shape", () => {
        /** A worker Job as the scheduler makes it, then changed by `change`. */
        function workerJob(change: (job: any) => void): any {
            const d = decide(stack.settings, anEvent().uuid(newUuid()).build());
            if (d.outcome !== "schedule") throw new Error(d.reason);
            const job = JSON.parse(JSON.stringify(d.manifest));
            change(job);
            return job;
        }
        const pod = (job: any) => job.spec.template.spec;
        const dindOf = (job: any) => pod(job).containers.find((c: any) => c.name === "dind");
        before(async () => {
            // The API server compiles a new policy within a moment; until then it admits everything.
            await eventually(
                "the policy to be in force",
                async () =>
                    creatorAs(state)
                        .createJob(
                            workerJob((j) => {
                                pod(j).hostPID = true;
                            }),
                        )
                        .then(
                            () => undefined,
                            () => true,
                        ),
                20_000,
            );
        });
        const refused: [string, (job: any) => void, RegExp][] = [
            [
                "a hostPath volume (the node's disk)",
                (j) => pod(j).volumes.push({ name: "root", hostPath: { path: "/" } }),
                /hostPath volumes are not allowed/,
            ],
            [
                "another image",
                (j) => {
                    pod(j).containers[1].image = "evil.example/root:1";
                },
                /image evil\.example\/root:1 is not one of the stack's worker images/,
            ],
            [
                "a privileged command container",
                (j) => {
                    pod(j).containers[1].securityContext = { privileged: true };
                },
                /only the dind sidecar, with the stack.s dind image and dockerd.s arguments, may be privileged/,
            ],
            [
                "a privileged init container that is not dind",
                (j) => {
                    (pod(j).initContainers ??= []).push({
                        name: "setup",
                        image: pod(j).containers[0].image,
                        securityContext: { privileged: true },
                    });
                },
                /only the dind sidecar, with the stack.s dind image and dockerd.s arguments, may be privileged/,
            ],
            [
                "the host's process namespace",
                (j) => {
                    pod(j).hostPID = true;
                },
                /host namespaces \(hostNetwork, hostPID, hostIPC\) are not allowed/,
            ],
            [
                "the host's network",
                (j) => {
                    pod(j).hostNetwork = true;
                },
                /host namespaces/,
            ],
            [
                "another service account",
                (j) => {
                    pod(j).serviceAccountName = "cluster-admin-sa";
                },
                /service account cluster-admin-sa is not one of the stack's \(default\)/,
            ],
            [
                "no worker labels",
                (j) => {
                    delete j.metadata.labels["app.kubernetes.io/managed-by"];
                },
                /its labels .* are missing/,
            ],
            // What a leaked credential would use to read the token or any Secret, or to take a node.
            [
                "an agent container that runs another command (with the token mounted)",
                (j) => {
                    pod(j).containers[0].command = ["sh", "-c", "cat /buildkite/agent-token/token"];
                },
                /the agent container is Scaledkite's/,
            ],
            [
                "an agent container with other arguments",
                (j) => {
                    pod(j).containers[0].args = ["start", "--spawn=5"];
                },
                /the agent container is Scaledkite's/,
            ],
            [
                "an agent container that runs the dind image",
                (j) => {
                    pod(j).containers[0].image = dindOf(j).image;
                },
                /the agent container is Scaledkite's/,
            ],
            [
                "an agent whose hooks path is another volume",
                (j) => {
                    pod(j).containers[0].env.find((e: any) => e.name === "BUILDKITE_HOOKS_PATH").value =
                        "/workspace/hooks";
                },
                /the agent container is Scaledkite's/,
            ],
            [
                "an agent with a variable of its own (a bootstrap script)",
                (j) => {
                    pod(j).containers[0].env.push({ name: "BUILDKITE_BOOTSTRAP_SCRIPT_PATH", value: "/workspace/x" });
                },
                /the agent container is Scaledkite's/,
            ],
            [
                "an agent that runs the job itself (not in Kubernetes mode)",
                (j) => {
                    pod(j).containers[0].env = pod(j).containers[0].env.filter(
                        (e: any) => e.name !== "BUILDKITE_KUBERNETES_EXEC",
                    );
                },
                /the agent container is Scaledkite's/,
            ],
            [
                "an agent that mounts the build's shared volume where it reads hooks",
                (j) => {
                    pod(j).containers[0].volumeMounts.push({ name: "build", mountPath: "/buildkite/hooks" });
                },
                /the agent container is Scaledkite's/,
            ],
            [
                "the command container mounting the token",
                (j) => {
                    pod(j).containers[1].volumeMounts.push({ name: "agent-token", mountPath: "/token" });
                },
                /the agent token Secret \(scaledkite-agent-token\) may only be mounted in the agent container/,
            ],
            [
                "the token in the command container's env",
                (j) => {
                    pod(j).containers[1].env.push({
                        name: "T",
                        valueFrom: { secretKeyRef: { name: "scaledkite-agent-token", key: "token" } },
                    });
                },
                /the agent token Secret/,
            ],
            [
                "the token as the agent's env (not the file)",
                (j) => {
                    pod(j).containers[0].env.find((e: any) => e.name === "BUILDKITE_AGENT_TOKEN").value = undefined;
                    pod(j).containers[0].env.find((e: any) => e.name === "BUILDKITE_AGENT_TOKEN").valueFrom = {
                        secretKeyRef: { name: "scaledkite-agent-token", key: "token" },
                    };
                },
                /(the agent token Secret|the agent container is Scaledkite's)/,
            ],
            [
                "the token Secret in envFrom",
                (j) => {
                    pod(j).containers[1].envFrom = [{ secretRef: { name: "scaledkite-agent-token" } }];
                },
                /the agent token Secret/,
            ],
            [
                "another Secret of the namespace in envFrom",
                (j) => {
                    pod(j).containers[1].envFrom = [{ secretRef: { name: "database-password" } }];
                },
                /other Secrets only those the stack's workers use/,
            ],
            [
                "another Secret of the namespace as a volume",
                (j) => {
                    pod(j).volumes.push({ name: "db", secret: { secretName: "database-password" } });
                    pod(j).containers[1].volumeMounts.push({ name: "db", mountPath: "/db" });
                },
                /other Secrets only those the stack's workers use/,
            ],
            [
                "the token through a projected volume",
                (j) => {
                    pod(j).volumes.push({
                        name: "p",
                        projected: { sources: [{ secret: { name: "scaledkite-agent-token" } }] },
                    });
                    pod(j).containers[1].volumeMounts.push({ name: "p", mountPath: "/p" });
                },
                /the agent token Secret/,
            ],
            [
                "a privileged container merely named dind, running the agent image",
                (j) => {
                    dindOf(j).image = pod(j).containers[0].image;
                    dindOf(j).command = ["sh", "-c", "sleep 1d"];
                },
                /only the dind sidecar, with the stack's dind image and dockerd's arguments, may be privileged/,
            ],
            [
                "the dind sidecar with other arguments",
                (j) => {
                    dindOf(j).args = ["sh", "-c", "nsenter -t 1 -m"];
                },
                /only the dind sidecar, with the stack's dind image and dockerd's arguments, may be privileged/,
            ],
            [
                "the dind sidecar with another wrapper",
                (j) => {
                    dindOf(j).command = ["/bin/sh", "-c", 'nsenter -t 1 -m -- "$@"', "x"];
                },
                /only the dind sidecar, with the stack's dind image and dockerd's arguments, may be privileged/,
            ],
            [
                "a privileged dind as an init container (a native sidecar), as Scaledkite once made it",
                (j) => {
                    const dind = dindOf(j);
                    pod(j).containers = pod(j).containers.filter((c: any) => c !== dind);
                    pod(j).initContainers = [{ ...dind, restartPolicy: "Always" }];
                },
                /only the dind sidecar, with the stack's dind image and dockerd's arguments, may be privileged/,
            ],
            [
                "added capabilities",
                (j) => {
                    pod(j).containers[1].securityContext.capabilities = { add: ["SYS_ADMIN"] };
                },
                /added capabilities are not allowed/,
            ],
            [
                "a seccomp profile Unconfined (pod)",
                (j) => {
                    pod(j).securityContext = { seccompProfile: { type: "Unconfined" } };
                },
                /seccomp and AppArmor profiles may not be Unconfined/,
            ],
            [
                "an AppArmor profile Unconfined (container)",
                (j) => {
                    pod(j).containers[1].securityContext.appArmorProfile = { type: "Unconfined" };
                },
                /seccomp and AppArmor profiles may not be Unconfined/,
            ],
            [
                "an AppArmor annotation unconfined",
                (j) => {
                    j.spec.template.metadata.annotations["container.apparmor.security.beta.kubernetes.io/command"] =
                        "unconfined";
                },
                /seccomp and AppArmor profiles may not be Unconfined/,
            ],
            [
                "a chosen node (nodeName)",
                (j) => {
                    pod(j).nodeName = "scaledkite-local-node";
                },
                /nodeName is not allowed/,
            ],
            [
                "a shared process namespace",
                (j) => {
                    pod(j).shareProcessNamespace = true;
                },
                /shareProcessNamespace is not allowed/,
            ],
            [
                "a host port",
                (j) => {
                    pod(j).containers[1].ports = [{ containerPort: 80, hostPort: 80 }];
                },
                /host ports are not allowed/,
            ],
            [
                "a CSI volume",
                (j) => {
                    pod(j).volumes.push({ name: "c", csi: { driver: "secrets-store.csi.k8s.io" } });
                },
                /a volume's source is not one of/,
            ],
        ];
        for (const [what, change, message] of refused) {
            it(`refuses ${what}, created as the scheduler's identity, with a clear message`, async () => {
                await assert.rejects(creatorAs(state).createJob(workerJob(change)), (e: KubernetesError) => {
                    assert.strictEqual(e.retryable, false, e.message);
                    assert.match(e.message, /Scaledkite's scheduler may only create worker Jobs of the shape it makes/);
                    assert.match(e.message, message);
                    assert.ok(!e.message.includes("\n"));
                    return true;
                });
            });
        }

        it("accepts the worker Job as made (every other test creates them through it), and binds only the Lambdas' groups", async () => {
            assert.strictEqual(await creatorAs(state).createJob(workerJob(() => {})), "created");
            // An administrator is not the scheduler: the policy does not apply to them.
            const job = workerJob((j) => {
                pod(j).hostPID = true;
            });
            await adminConfig(state)
                .makeApiClient(k8sClient().BatchV1Api)
                .createNamespacedJob({ namespace: stack.namespace, body: job });
        });
    });

    it("Pod Security Admission: a stack without dind (the default) enforces baseline on its namespace, so even an admin's privileged pod is refused", async () => {
        const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
        const labels = (await core.readNamespace({ name: stack.namespace })).metadata!.labels!;
        assert.strictEqual(
            labels["pod-security.kubernetes.io/enforce"],
            "privileged",
            "privileged dind needs privileged",
        );
        assert.strictEqual(labels["pod-security.kubernetes.io/enforce-version"], "v1.34", "pinned, not latest");
        assert.strictEqual(labels["pod-security.kubernetes.io/warn"], "privileged");
        const docker = "rbac-no-dind";
        try {
            await deployStack(state, docker);
            assert.strictEqual(
                (await core.readNamespace({ name: docker })).metadata!.labels!["pod-security.kubernetes.io/enforce"],
                "baseline",
            );
            const err = await core
                .createNamespacedPod({
                    namespace: docker,
                    body: {
                        metadata: { name: "root-on-the-node" },
                        spec: { containers: [{ name: "c", image: "x", securityContext: { privileged: true } }] },
                    },
                })
                .then(
                    () => undefined,
                    (e) => e as { code?: number; body?: string },
                );
            assert.strictEqual(err?.code, 403);
            assert.match(String(err?.body), /violates PodSecurity \\"baseline:v1.34\\": privileged/);
        } finally {
            await deleteNamespace(state, docker);
        }
    });

    it("a stack whose queues all run rootless dind refuses, as the scheduler, a dind sidecar that runs as root", async function () {
        this.timeout(60_000);
        const ns = "rbac-rootless";
        try {
            const rootless = await deployStack(state, ns, { dind: "rootless" });
            const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
            assert.strictEqual(
                (await core.readNamespace({ name: ns })).metadata!.labels!["pod-security.kubernetes.io/enforce"],
                "privileged",
                "stock rootless dind still needs a privileged container",
            );
            const job = (asRoot: boolean) => {
                const d = decide(rootless.settings, anEvent().uuid(newUuid()).build());
                if (d.outcome !== "schedule") throw new Error(d.reason);
                const j = JSON.parse(JSON.stringify(d.manifest));
                if (asRoot)
                    j.spec.template.spec.containers.find((c: any) => c.name === "dind").securityContext = {
                        privileged: true,
                    };
                return j;
            };
            await eventually(
                "the policy to be in force",
                async () =>
                    creatorAs(state)
                        .createJob(job(true))
                        .then(
                            () => undefined,
                            () => true,
                        ),
                20_000,
            );
            await assert.rejects(creatorAs(state).createJob(job(true)), (e: KubernetesError) => {
                assert.match(
                    e.message,
                    /the dind sidecar runs rootless on every queue, so it must run as a non-root user/,
                );
                return !e.retryable;
            });
            assert.strictEqual(
                await creatorAs(state).createJob(job(false)),
                "created",
                "the rootless sidecar as made is admitted",
            );
        } finally {
            await deleteNamespace(state, ns);
        }
    });

    it("refuses an identity with no access entry group", async () => {
        const handle = createEventHandler(stack.settings, creatorAs(state, STRANGER_IDENTITY), () => {});
        await assert.rejects(handle(anEvent().build()), (e: KubernetesError) => e.status === 403 && !e.retryable);
    });

    it("treats a token the server does not accept as worth retrying with a new one", async () => {
        let signed = 0;
        const tokens = new TokenCache(async () => {
            signed++;
            return {
                token: `k8s-aws-v1.${Buffer.from("https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity").toString("base64url")}`,
                expiresAt: new Date(Date.now() + 600_000),
            };
        });
        const creator = bearerJobClient(
            state.server,
            require("fs").readFileSync(state.caFile).toString("base64"),
            tokens,
        );
        const handle = createEventHandler(stack.settings, creator, () => {});
        await assert.rejects(handle(anEvent().build()), (e: KubernetesError) => e.status === 401 && e.retryable);
        await assert.rejects(handle(anEvent().build()), (e: KubernetesError) => e.status === 401);
        assert.strictEqual(signed, 2, "the refused token was dropped and a new one signed");
    });
});
