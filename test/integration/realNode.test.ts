/**
 * Real Buildkite jobs end to end on the real node: the scheduler's handler creates the worker Job on
 * the real API server, kube-scheduler places it on the kubelet node, containerd runs the local agent
 * and dind images, and the real buildkite-agent (v3.138.3, built from Go modules) registers with the
 * agent API stand-in, acquires its job, runs it and reports it.
 */
import * as assert from "assert";
import * as crypto from "crypto";
import { spawnSync } from "child_process";
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import { type ClusterState } from "../../k8s/local/cluster";
import { CONTAINERD_SOCKET, LOCAL_IMAGES, POD_GATEWAY_IP } from "../../k8s/local/node";
import { AGENT_EXIT_NOT_RUN } from "../../scheduler/core/agentLauncher";
import { SWEEPER_IDENTITY } from "../../k8s/local/awsIdentities";
import { createEventHandler } from "../../scheduler/schedule/lambda";
import { stacksApi } from "../../scheduler/clients/stacksApi";
import { createSweeper } from "../../scheduler/sweep/lambda";
import { startStacksApi } from "../../k8s/local/stacksApiStandIn";
import { AGENT_EXIT_CANNOT_ACQUIRE } from "../../scheduler/core/agentLauncher";
import { AgentApiStandIn, type StandInJob } from "../../k8s/local/agentApiStandIn";
import { anEvent, newUuid } from "../helpers/builders";
import { startGitHttpServer } from "../../k8s/local/gitHttpServer";
import { startGitSshServer } from "../helpers/gitSshServer";
import { startWorkerAws, WORKER_ROLE } from "../helpers/workerAwsStandIn";
import { creatorAs, deleteNamespace, deployStack, type DeployedStack, LOCAL_WORKER_IMAGES } from "../helpers/deploy";
import { adminConfig, eventually, k8sClient, localClusterWithNode } from "../helpers/localCluster";
import { PROJECT_ROOT } from "../helpers/pulumiProgram";
import { run as runCli } from "../../scheduler/cli/cli";
import { parseEmf } from "../helpers/emf";
import { DOCKER_HOST } from "../../scheduler/core/dind";

const QUEUE = "dynamic";
const GRACE_SECONDS = 20;
/** Namespaces of their own per run: a namespace still terminating after the last run refuses new objects. */
const RUN = Math.random().toString(36).slice(2, 7);

describe("real Buildkite jobs on the real node (agent API stand-in)", function () {
    let state: ClusterState;
    let api: AgentApiStandIn;
    let stack: DeployedStack;
    const namespaces: string[] = [];

    before(async function () {
        state = await localClusterWithNode(this);
        api = await new AgentApiStandIn().start(POD_GATEWAY_IP);
        // dind as root: the scenarios below that build images, and the contrast to rootless.
        stack = await newStack("real-jobs", { dind: "privileged" });
    });
    after(async function () {
        this.timeout(60_000);
        await api?.stop();
        if (state) for (const ns of namespaces) await deleteNamespace(state, ns);
    });

    async function newStack(name: string, extra: Record<string, unknown> = {}): Promise<DeployedStack> {
        const namespace = `${name}-${RUN}`;
        namespaces.push(namespace);
        return deployStack(
            state,
            namespace,
            {
                ...LOCAL_WORKER_IMAGES,
                agentToken: api.registrationToken,
                env: { BUILDKITE_AGENT_ENDPOINT: api.endpoint },
                terminationGracePeriodSeconds: GRACE_SECONDS,
                ttlSecondsAfterFinished: 600,
                backoffLimit: 0,
                // small requests, so a few workers fit the 2-core node at once
                resources: {
                    agent: { requests: { cpu: "50m", memory: "64Mi" } },
                    command: { requests: { cpu: "100m", memory: "128Mi" } },
                    dind: { requests: { cpu: "100m", memory: "256Mi" } },
                },
                ...extra,
            },
            "real",
        );
    }

    const kube = () => {
        const kc = adminConfig(state);
        return { batch: kc.makeApiClient(k8sClient().BatchV1Api), core: kc.makeApiClient(k8sClient().CoreV1Api) };
    };

    /** Schedules job `uuid` through the handler, as an EventBridge event would. Returns the Job's name. */
    async function schedule(s: DeployedStack, uuid: string): Promise<string> {
        const logs: string[] = [];
        const decision = await createEventHandler(s.settings, creatorAs(state), (l) => logs.push(l))(
            anEvent().uuid(uuid).queue(QUEUE).runnableAt(new Date().toISOString()).build(),
        );
        assert.strictEqual(decision.outcome, "created", logs.join("\n"));
        return decision.job!.split("/")[1]; // "<namespace>/<name>"
    }

    async function jobCondition(
        s: DeployedStack,
        name: string,
        timeoutMs = 120_000,
    ): Promise<{ type: string; reason?: string; job: V1Job }> {
        return eventually(
            `Job ${name} to complete or fail`,
            async () => {
                const job = await kube().batch.readNamespacedJob({ name, namespace: s.namespace });
                const c = job.status?.conditions?.find(
                    (x) => (x.type === "Complete" || x.type === "Failed") && x.status === "True",
                );
                return c ? { type: c.type, reason: c.reason, job } : undefined;
            },
            timeoutMs,
        );
    }

    const agentExitCode = (pod: V1Pod) =>
        pod.status?.containerStatuses?.find((c) => c.name === "agent")?.state?.terminated?.exitCode;

    async function podsOf(s: DeployedStack, name: string): Promise<V1Pod[]> {
        return (await kube().core.listNamespacedPod({ namespace: s.namespace, labelSelector: `job-name=${name}` }))
            .items;
    }

    async function finished(uuid: string, timeoutMs = 120_000): Promise<StandInJob> {
        try {
            return await eventually(
                `job ${uuid} to be finished in Buildkite`,
                async () => {
                    const j = api.jobs.get(uuid)!;
                    return j.state === "finished" || j.state === "canceled" ? j : undefined;
                },
                timeoutMs,
            );
        } catch (e) {
            const j = api.jobs.get(uuid);
            throw new Error(
                `${(e as Error).message}; the job is ${j?.state}, its log: ${api.log(uuid).slice(0, 2500)} … ${api.log(uuid).slice(-500)}`,
                { cause: e },
            );
        }
    }

    /**
     * The agent that ran `job` has disconnected (it does so right after finishing the job). On a
     * timeout the message says what the agent asked of the stand-in since the job finished.
     */
    async function disconnected(job: StandInJob): Promise<boolean> {
        try {
            return await eventually(
                `the agent of job ${job.id} to disconnect`,
                async () => (api.agents.find((a) => a.id === job.acquiredBy)?.disconnected ? true : undefined),
                30_000,
            );
        } catch (e) {
            throw new Error(
                `${(e as Error).message}; its requests since the job finished: ${api.requestsOf(job.acquiredBy, job.times.finished ?? 0)}`,
                { cause: e },
            );
        }
    }

    it("builds a FROM scratch image through the dind sidecar and runs it; the log and exit 0 reach Buildkite", async function () {
        this.timeout(240_000);
        const uuid = newUuid();
        api.addJob(uuid, {
            queue: QUEUE,
            command: [
                "set -eu",
                'echo "DOCKER_HOST=$DOCKER_HOST"',
                "mkdir -p ctx && cd ctx",
                'cp "$(command -v buildkite-agent)" hello',
                "printf 'FROM scratch\\nCOPY hello /hello\\nENTRYPOINT [\"/hello\"]\\n' > Dockerfile",
                "docker build -q -t scaledkite-hello .",
                "docker run --rm scaledkite-hello --version",
            ].join("\n"),
        });
        const name = await schedule(stack, uuid);
        const job = await finished(uuid, 200_000);
        const log = api.log(uuid);
        assert.strictEqual(job.exitStatus, "0", log);
        assert.match(log, new RegExp(`DOCKER_HOST=${DOCKER_HOST.replace(/\//g, "\\/")}`));
        assert.match(log, /buildkite-agent version 3\.138\.3/, "the image built in dind ran and printed");
        assert.ok(await disconnected(job), "the agent disconnected after its one job");
        const done = await jobCondition(stack, name);
        assert.strictEqual(done.type, "Complete");
        const pods = await podsOf(stack, name);
        assert.strictEqual(pods.length, 1);
        const dind = pods[0].status!.containerStatuses!.find((c) => c.name === "dind")!;
        assert.strictEqual(dind.state?.terminated?.exitCode, 0, "dind stopped itself, exit 0, once the agent exited");
        assert.strictEqual(pods[0].status!.phase, "Succeeded");
        // The next sweep measures the worker's start latency: from the job becoming runnable (the event)
        // to its agent container running, as the kubelet reported it.
        const stacks = await startStacksApi(undefined, (u) => api.jobs.get(u)?.state);
        try {
            const lines: string[] = [];
            await createSweeper(
                stack.settings,
                stacksApi(() => stacks.token, { endpoint: stacks.endpoint }),
                creatorAs(state, SWEEPER_IDENTITY),
                "scaledkite-test",
                (l) => lines.push(l),
            )();
            const { metrics } = parseEmf(
                lines.find((l) => l.includes('"msg":"scaledkite.workers"') && l.includes(`"queue":"${QUEUE}"`))!,
            );
            const latencies = metrics.StartLatency.value as number[];
            assert.ok(
                latencies.length >= 1 && latencies.every((ms) => ms > 0 && ms < 200_000),
                `start latencies ${latencies}`,
            );
        } finally {
            await stacks.close();
        }
        // The kubelet serves the containers' logs: `npm run kubectl -- logs` works on this node.
        const logs = spawnSync(
            "npm",
            ["run", "--silent", "kubectl", "--", "logs", "-n", stack.namespace, pods[0].metadata!.name!, "-c", "agent"],
            { cwd: PROJECT_ROOT, encoding: "utf8" },
        );
        assert.strictEqual(logs.status, 0, logs.stderr);
        assert.match(logs.stdout, /Successfully registered agent/);
    });

    it("rootless dind: the build's containers are root only in dockerd's user namespace (uid 1000 on the node); privileged: root", async function () {
        this.timeout(300_000);
        const rootless = await newStack("rootless-dind", { dind: "rootless", dindImage: LOCAL_IMAGES.dindRootless });
        const command = [
            "set -eu",
            // An image of touch and cat (the agent image's, with their libraries): FROM scratch needs no registry.
            "tar -chf tools.tar /usr/bin/touch /usr/bin/cat /lib/x86_64-linux-gnu/libc.so.6 /lib64/ld-linux-x86-64.so.2 2>/dev/null",
            "docker import tools.tar scaledkite-tools >/dev/null",
            "echo \"uid_map:$(docker run --rm scaledkite-tools /usr/bin/cat /proc/self/uid_map | head -1 | tr -s ' ')\"",
            'if docker run --rm -v /:/host scaledkite-tools /usr/bin/touch /host/usr/owned-by-the-build 2>/dev/null; then echo "root-owned /usr of the sidecar: written"; else echo "root-owned /usr of the sidecar: refused"; fi',
        ].join("\n");
        const run = async (s: DeployedStack) => {
            const uuid = newUuid();
            api.addJob(uuid, { queue: QUEUE, command });
            const name = await schedule(s, uuid);
            const job = await finished(uuid, 200_000);
            assert.strictEqual(job.exitStatus, "0", api.log(uuid));
            assert.strictEqual((await jobCondition(s, name)).type, "Complete");
            const dind = (await podsOf(s, name))[0].status!.containerStatuses!.find((c) => c.name === "dind")!;
            assert.strictEqual(dind.state?.terminated?.exitCode, 0, "dockerd ran until the agent exited");
            return api.log(uuid);
        };
        const [rootlessLog, privilegedLog] = await Promise.all([run(rootless), run(stack)]);
        // Root (0) in the build's container is uid 1000 one namespace up: the sidecar's unprivileged user.
        assert.match(rootlessLog, /uid_map: 0 1000 1\b/, rootlessLog);
        assert.match(
            rootlessLog,
            /root-owned \/usr of the sidecar: refused/,
            "a container that mounts dockerd's root cannot write what real root owns",
        );
        // The same step with privileged dind is real root: the contrast the rootless mode buys.
        assert.match(privilegedLog, /uid_map: 0 0 4294967295\b/, privilegedLog);
        assert.match(privilegedLog, /root-owned \/usr of the sidecar: written/);
    });
    // The default queue (no dind) and rootless dind: a step finds neither the registration token nor
    // root on the node (README, Security model). Privileged dind is root on the node by design (above).
    for (const mode of ["none", "rootless"] as const) {
        it(`dind ${mode}${mode === "none" ? " (the default)" : ""}: the build finds neither the registration token (environment, /proc, mounted and shared files, containerd's container configs) nor root on the node; checkout, meta-data and artifact upload work`, async function () {
            this.timeout(240_000);
            const server = await startGitHttpServer(POD_GATEWAY_IP, "bot", "s3cret-token", {
                "README.md": "checked out\n",
            });
            try {
                const s = await newStack(`real-token-${mode}`, {
                    gitCredentials: `http://bot:s3cret-token@${new URL(server.url).host}`,
                    ...(mode === "rootless" ? { dind: "rootless", dindImage: LOCAL_IMAGES.dindRootless } : {}),
                });
                assert.strictEqual(s.settings.queues[QUEUE].dind, mode);
                const token = api.registrationToken;
                const half = Math.floor(token.length / 2);
                const uuid = newUuid();
                api.addJob(uuid, {
                    queue: QUEUE,
                    repo: server.url,
                    // The token is built at run time from two halves, so the step's own text and
                    // environment never hold it; `search` reports each place that does.
                    command: [
                        `T="${token.slice(0, half)}""${token.slice(half)}"`,
                        "search() {",
                        '  for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr \'\\0\' \'\\n\' < "$f" 2>/dev/null | grep -qF -- "$1" && echo "FOUND in $f"; done',
                        "  env | grep -qF -- \"$1\" && echo 'FOUND in env'",
                        // Every mounted and shared volume (the image's /usr cannot hold it).
                        "  grep -rlF --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev --exclude-dir=usr -- \"$1\" / 2>/dev/null | sed 's/^/FOUND in file /'",
                        "}",
                        'echo "registration token: $(search "$T" | wc -l) places"; search "$T"',
                        // The same search finds the job's own access token, which the step does hold.
                        'echo "access token: $(search "$BUILDKITE_AGENT_ACCESS_TOKEN" | grep -c /proc/) places in /proc"',
                        "echo \"mounts: $(grep -o ' /[^ ]*' /proc/self/mounts | sort -u | tr -d '\\n')\"",
                        // Root on the node: the capabilities of the step's processes, and a mount (CAP_SYS_ADMIN).
                        "echo \"CapEff: $(awk '/^CapEff/ {print $2}' /proc/self/status)\"",
                        "if mount -t tmpfs none /mnt 2>/dev/null; then echo 'mount: allowed'; else echo 'mount: refused'; fi",
                        "cat README.md",
                        ...(mode === "rootless"
                            ? [
                                  "printf 'FROM scratch\\nCOPY README.md /\\n' > Dockerfile && docker build -q -t token-free . >/dev/null && echo 'docker build ok'",
                              ]
                            : [
                                  "if [ -n \"${DOCKER_HOST:-}\" ] || [ -S /var/run/docker.sock ]; then echo 'docker: reachable'; else echo 'docker: none'; fi",
                              ]),
                        'buildkite-agent meta-data set checked-by-step yes && echo "meta-data: $(buildkite-agent meta-data get checked-by-step)"',
                        "mkdir -p out && echo \"built by $BUILDKITE_JOB_ID\" > out/report.txt && buildkite-agent artifact upload 'out/*.txt' && echo 'artifact upload ok'",
                    ].join("\n"),
                });
                const name = await schedule(s, uuid);
                const job = await finished(uuid, 200_000);
                const text = api.text(uuid);
                assert.strictEqual(job.exitStatus, "0", text);
                assert.match(text, /^registration token: 0 places$/m, text);
                assert.doesNotMatch(text, /^FOUND in/m);
                assert.match(
                    text,
                    /^access token: [1-9]\d* places in \/proc$/m,
                    "the search works: it finds what the step holds",
                );
                assert.match(text, /^mounts: .*\/workspace/m, "the shared volume was searched");
                // The runtime's default set (no CAP_SYS_ADMIN, bit 21), not the full set a privileged container has.
                const capEff = BigInt(`0x${/^CapEff: ([0-9a-f]+)$/m.exec(text)![1]}`);
                assert.strictEqual(capEff & (1n << 21n), 0n, `no CAP_SYS_ADMIN: ${capEff.toString(16)}`);
                assert.match(text, /^mount: refused$/m);
                assert.match(text, /^checked out$/m);
                assert.match(text, mode === "rootless" ? /^docker build ok$/m : /^docker: none$/m);
                assert.match(text, /^meta-data: yes$/m);
                assert.match(text, /^artifact upload ok$/m);
                const artifacts = [...job.artifacts.values()];
                assert.deepStrictEqual(
                    artifacts.map((a) => [a.path, a.state, a.content?.toString()]),
                    [["out/report.txt", "finished", `built by ${uuid}\n`]],
                    "the file reached the storage and the agent reported it finished",
                );
                assert.strictEqual(
                    crypto.createHash("sha256").update(artifacts[0].content!).digest("hex"),
                    artifacts[0].sha256,
                );
                // On the node: no container config of the pod (its environment, arguments) holds the token.
                // The kubelet posts each container's ID with its status, which may lag the job's end on a
                // loaded node: wait until every container the pod had has one.
                const ids = await eventually(
                    "every container of the worker pod to have an ID in its status",
                    async () => {
                        const pod = (await podsOf(s, name))[0];
                        const statuses = [
                            ...(pod?.status?.containerStatuses ?? []),
                            ...(pod?.status?.initContainerStatuses ?? []),
                        ];
                        if (statuses.length === 0 || !statuses.every((c) => c.containerID))
                            // Thrown, so the timeout's message says what was seen last.
                            throw new Error(
                                statuses.map((c) => `${c.name}=${c.containerID ?? "no ID"}`).join(", ") ||
                                    "no statuses",
                            );
                        return statuses.map((c) => c.containerID!.replace(/^containerd:\/\//, ""));
                    },
                    30_000,
                );
                assert.ok(ids.length >= 2, "the pod's containers were inspected");
                for (const id of ids) {
                    const info = spawnSync(
                        "ctr",
                        ["--address", CONTAINERD_SOCKET, "-n", "k8s.io", "containers", "info", id],
                        { encoding: "utf8" },
                    );
                    assert.strictEqual(info.status, 0, info.stderr);
                    assert.ok(
                        info.stdout.includes("BUILDKITE_AGENT_TOKEN=file:///buildkite/agent-token/token") ||
                            !info.stdout.includes("BUILDKITE_AGENT_TOKEN"),
                        "the agent's token setting is the file",
                    );
                    assert.ok(!info.stdout.includes(token), `container ${id}'s config holds no token`);
                }
            } finally {
                await server.close();
            }
        });
    }

    it("reports a failing command's exit status; the worker completes and is not retried", async function () {
        this.timeout(180_000);
        const uuid = newUuid();
        api.addJob(uuid, { queue: QUEUE, command: "echo about to fail; exit 3" });
        const name = await schedule(stack, uuid);
        const job = await finished(uuid);
        assert.strictEqual(job.exitStatus, "3");
        assert.match(api.log(uuid), /about to fail/);
        assert.strictEqual((await jobCondition(stack, name)).type, "Complete");
        assert.strictEqual((await podsOf(stack, name)).length, 1);
    });

    /** A command that says it started, then works until stopped, and says its last words on SIGTERM. */
    const longCommand =
        "trap 'echo last words before stopping; exit 143' TERM; echo started; i=0; while [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done";

    it("a job cancelled in Buildkite mid-run: the agent cancels it, its last log lines arrive, the pod completes", async function () {
        this.timeout(180_000);
        const uuid = newUuid();
        api.addJob(uuid, { queue: QUEUE, command: longCommand });
        const name = await schedule(stack, uuid);
        await eventually(
            "the command to start",
            async () => (/started/.test(api.log(uuid)) ? true : undefined),
            150_000,
        );
        api.cancel(uuid);
        const job = await finished(uuid, 60_000);
        assert.strictEqual(job.state, "canceled");
        assert.match(api.log(uuid), /last words before stopping/);
        assert.strictEqual(job.signalReason, "cancel");
        assert.strictEqual((await jobCondition(stack, name)).type, "Complete");
    });

    it("the worker Job deleted mid-run (Job Finished path): the job is reported finished within the grace period, never lost", async function () {
        this.timeout(180_000);
        const uuid = newUuid();
        api.addJob(uuid, { queue: QUEUE, command: longCommand });
        const name = await schedule(stack, uuid);
        await eventually(
            "the command to start",
            async () => (/started/.test(api.log(uuid)) ? true : undefined),
            150_000,
        );
        const deletedAt = Date.now();
        await kube().batch.deleteNamespacedJob({ name, namespace: stack.namespace, propagationPolicy: "Background" });
        const job = await finished(uuid, (GRACE_SECONDS + 10) * 1000);
        assert.ok(
            job.times.finished! - deletedAt < GRACE_SECONDS * 1000,
            `finished ${job.times.finished! - deletedAt} ms after the delete`,
        );
        assert.match(api.log(uuid), /last words before stopping/, "the last log lines were uploaded");
        assert.ok(job.signalReason, `the agent says why it stopped the job (${job.signalReason})`);
        assert.ok(await disconnected(job), "the agent disconnected: Buildkite does not see it as lost");
    });

    it("activeDeadlineSeconds reached mid-run: the job is reported finished with its last logs, the Job fails as DeadlineExceeded", async function () {
        this.timeout(240_000);
        const s = await newStack("real-deadline", { activeDeadlineSeconds: 60 });
        const uuid = newUuid();
        api.addJob(uuid, { queue: QUEUE, command: longCommand.replace("600", "3000") });
        const name = await schedule(s, uuid);
        const job = await finished(uuid, (60 + GRACE_SECONDS + 60) * 1000);
        assert.match(api.log(uuid), /last words before stopping/);
        assert.ok(job.signalReason, `the agent says why it stopped the job (${job.signalReason})`);
        assert.ok(await disconnected(job));
        const failed = await jobCondition(s, name);
        assert.deepStrictEqual([failed.type, failed.reason], ["Failed", "DeadlineExceeded"]);
    });

    it("an acquisition Buildkite rejects (job already taken): exit 27, the Job fails at once, no second pod", async function () {
        this.timeout(180_000);
        const uuid = newUuid();
        const taken = api.addJob(uuid, { queue: QUEUE, command: "echo never" });
        taken.state = "running";
        taken.acquiredBy = "another-agent";
        const s = await newStack("real-rejected", { backoffLimit: 2 });
        const name = await schedule(s, uuid);
        const failed = await jobCondition(s, name, 150_000);
        assert.strictEqual(failed.type, "Failed");
        assert.strictEqual(failed.reason, "PodFailurePolicy");
        const pods = await podsOf(s, name);
        assert.strictEqual(pods.length, 1, "backoffLimit 2, yet no retry");
        assert.strictEqual(agentExitCode(pods[0]), AGENT_EXIT_CANNOT_ACQUIRE);
        assert.strictEqual(api.jobs.get(uuid)!.rejectedAcquisitions, 1);
    });

    it("an acquisition that fails without 27 (the agent exits 0): the pod fails, and the job gets a new worker", async function () {
        this.timeout(240_000);
        // Unknown to the API (404): v3.138.3 logs "Failed to acquire and run job" and exits 0.
        const uuid = newUuid();
        const s = await newStack("real-not-run", { backoffLimit: 1 });
        const name = await schedule(s, uuid);
        const failed = await jobCondition(s, name, 200_000);
        assert.strictEqual(failed.type, "Failed");
        assert.strictEqual(failed.reason, "BackoffLimitExceeded");
        const pods = await podsOf(s, name);
        assert.strictEqual(pods.length, 2, "a second worker tried");
        assert.deepStrictEqual(pods.map(agentExitCode), [AGENT_EXIT_NOT_RUN, AGENT_EXIT_NOT_RUN]);
        // Then the sweep gives up on it: failed in Buildkite with the reason, its worker deleted.
        const stacks = await startStacksApi(undefined, (u) => api.jobs.get(u)?.state);
        try {
            const lines: string[] = [];
            const sweep = createSweeper(
                s.settings,
                stacksApi(() => stacks.token, { endpoint: stacks.endpoint }),
                creatorAs(state, SWEEPER_IDENTITY),
                "scaledkite-test",
                (l) => lines.push(l),
            );
            const { workers } = await sweep();
            assert.deepStrictEqual(
                workers.failed.map((f) => f.jobUuid),
                [uuid],
            );
            const stuck = parseEmf(
                lines.find((l) => l.includes('"msg":"scaledkite.sweep.workers"') && l.includes(`"queue":"${QUEUE}"`))!,
            );
            assert.deepStrictEqual(
                stuck.metrics.FailedStuck,
                { unit: "Count", value: 1 },
                "the metric counts the worker it gave up on",
            );
            assert.match(
                stacks.finished.get(uuid)!,
                /^Scaledkite: the worker's agent exited 2 time\(s\) without running the job \(it could not acquire it/,
            );
            await eventually("the worker Job to be deleted", async () =>
                kube()
                    .batch.readNamespacedJob({ name, namespace: s.namespace })
                    .then(
                        () => undefined,
                        () => true,
                    ),
            );
        } finally {
            await stacks.close();
        }
    });

    it("checks out a private repository over HTTP with the credentials Secret, and git prints no fatal: line", async function () {
        this.timeout(180_000);
        const server = await startGitHttpServer(POD_GATEWAY_IP, "bot", "s3cret-token", {
            "README.md": "private repository content\n",
        });
        try {
            const s = await newStack("real-git", {
                gitCredentials: `http://bot:s3cret-token@${new URL(server.url).host}`,
            });
            const uuid = newUuid();
            api.addJob(uuid, {
                queue: QUEUE,
                repo: server.url,
                command: "cat README.md; git --no-pager log --format=%s -1",
            });
            await schedule(s, uuid);
            const job = await finished(uuid);
            const log = api.log(uuid);
            assert.strictEqual(job.exitStatus, "0", log);
            assert.match(log, /private repository content/);
            assert.match(api.text(uuid), /^initial$/m);
            assert.doesNotMatch(log, /fatal:/, "the read-only credentials file is never written");
            assert.ok(server.refused >= 1, "the server asked for credentials, and the helper answered");
        } finally {
            await server.close();
        }
    });

    it("checks out a private repository over SSH with the deploy key and strict known_hosts; a wrong host key is refused", async function () {
        this.timeout(240_000);
        const server = await startGitSshServer(POD_GATEWAY_IP, { "README.md": "over ssh\n" });
        try {
            const run = async (name: string, knownHosts: string) => {
                const s = await newStack(name, { gitSshKey: server.clientKey, gitKnownHosts: knownHosts });
                const uuid = newUuid();
                api.addJob(uuid, { queue: QUEUE, repo: server.url, command: "cat README.md" });
                await schedule(s, uuid);
                return { job: await finished(uuid), text: api.text(uuid) };
            };
            const good = await run("real-ssh", server.knownHosts);
            assert.strictEqual(good.job.exitStatus, "0", good.text);
            assert.match(good.text, /^over ssh$/m);
            assert.doesNotMatch(good.text, /fatal:/);
            const spoofed = await run("real-ssh-spoofed", server.wrongKnownHosts);
            assert.notStrictEqual(spoofed.job.exitStatus, "0", "a host whose key is not the known one is refused");
            assert.match(spoofed.text, /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
        } finally {
            await server.close();
        }
    });

    it("runs the hooks ConfigMap's hooks, and the ECR login hook leaves a docker config that the real docker CLI uses", async function () {
        this.timeout(180_000);
        const aws = await startWorkerAws(POD_GATEWAY_IP);
        aws.allowedAccounts.add("111122223333");
        const registry = "111122223333.dkr.ecr.us-east-1.amazonaws.com";
        try {
            const s = await newStack("real-hooks", {
                hooks: { environment: '#!/bin/sh\necho "user hook ran"\nexport FROM_USER_HOOK=yes\n' },
                ecrRegistries: [registry],
                // The role's temporary credentials as environment (the hook's third identity source):
                // Pod Identity and IRSA are tested against the same stand-ins in test/ecrLogin.test.ts.
                env: {
                    BUILDKITE_AGENT_ENDPOINT: api.endpoint,
                    AWS_ENDPOINT_URL_ECR: `${aws.url}/ecr`,
                    AWS_REGION: "us-east-1",
                    AWS_ACCESS_KEY_ID: WORKER_ROLE.accessKeyId,
                    AWS_SECRET_ACCESS_KEY: WORKER_ROLE.secretAccessKey,
                    AWS_SESSION_TOKEN: WORKER_ROLE.sessionToken,
                },
            });
            const uuid = newUuid();
            api.addJob(uuid, {
                queue: QUEUE,
                command: `echo "FROM_USER_HOOK=$FROM_USER_HOOK"; docker logout ${registry}`,
            });
            await schedule(s, uuid);
            const job = await finished(uuid);
            const text = api.text(uuid);
            assert.strictEqual(job.exitStatus, "0", text);
            assert.match(text, /^user hook ran$/m);
            assert.match(text, /^FROM_USER_HOOK=yes$/m, "the user's environment hook changed the job's environment");
            assert.match(text, new RegExp(`docker is logged in to ${registry.replace(/\./g, "\\.")}`));
            // `docker logout` removes only what the CLI found in its config: the hook's login.
            assert.match(text, new RegExp(`^Removing login credentials for ${registry.replace(/\./g, "\\.")}$`, "m"));
            assert.ok(
                aws.requests.some((r) => r.startsWith("POST /ecr/ us-east-1 111122223333")),
                aws.requests.join("\n"),
            );
        } finally {
            await aws.close();
        }
    });

    it("the stock dind arguments this pod used before (first argument starting with -) crash-loop dockerd", async function () {
        this.timeout(120_000);
        // What docker:dind's entrypoint makes of ["--host=tcp://127.0.0.1:2375", "--tls=false"]: it adds
        // --host=tcp://0.0.0.0:2375, and dockerd fails on the second listener of the same port.
        const { core } = kube();
        const ns = namespaces[0];
        const name = "old-dind-args";
        await core.createNamespacedPod({
            namespace: ns,
            body: {
                metadata: { name },
                spec: {
                    restartPolicy: "Never",
                    automountServiceAccountToken: false,
                    containers: [
                        {
                            name: "dind",
                            image: LOCAL_WORKER_IMAGES.dindImage,
                            securityContext: { privileged: true },
                            env: [{ name: "DOCKER_TLS_CERTDIR", value: "" }],
                            args: ["--host=tcp://127.0.0.1:2375", "--tls=false"],
                        },
                    ],
                },
            },
        });
        const pod = await eventually(
            "dockerd to exit",
            async () => {
                const p = await core.readNamespacedPod({ name, namespace: ns });
                return p.status?.phase === "Failed" ? p : undefined;
            },
            100_000,
        );
        assert.notStrictEqual(pod.status!.containerStatuses![0].state!.terminated!.exitCode, 0);
        const log = await core.readNamespacedPodLog({ name, namespace: ns, container: "dind" });
        assert.match(log, /address already in use/);
    });

    it("scaledkite explain says what happened to a running, a completed, an unpullable and an unschedulable worker", async function () {
        this.timeout(240_000);
        const explain = async (uuid: string, namespace: string) => {
            const out: string[] = [];
            const err: string[] = [];
            const code = await runCli(
                [
                    "explain",
                    `https://buildkite.com/acme/app/builds/7#${uuid}`,
                    "--kubeconfig",
                    state.kubeconfig,
                    "--namespace",
                    namespace,
                ],
                {
                    out: (l) => out.push(l),
                    err: (l) => err.push(l),
                    readStdin: () => "",
                    cwd: PROJECT_ROOT,
                    env: {},
                },
            );
            return { code, text: out.join("\n"), err: err.join("\n") };
        };
        const running = newUuid();
        const completed = newUuid();
        api.addJob(running, { queue: QUEUE, command: "sleep 20" });
        api.addJob(completed, { queue: QUEUE, command: "true" });
        const [missing, nowhere] = await Promise.all([
            newStack("explain-pull", { image: "scaledkite.local/missing:1", dind: "none" }),
            newStack("explain-node", { nodeSelector: { pool: "nowhere" } }),
        ]);
        const unpullable = newUuid();
        const unschedulable = newUuid();
        await Promise.all([
            schedule(stack, running),
            schedule(stack, completed),
            schedule(missing, unpullable),
            schedule(nowhere, unschedulable),
        ]);

        await eventually(
            "the long job to run",
            async () => (api.jobs.get(running)!.state === "running" ? true : undefined),
            120_000,
        );
        // The kubelet reports the pod's state to the API server a moment after the fact.
        const r = await eventually(
            "the API server to see it running",
            async () => {
                const e = await explain(running, stack.namespace);
                return / running on node /.test(e.text) ? e : undefined;
            },
            20_000,
        );
        assert.strictEqual(r.code, 0, r.err);
        assert.match(r.text, new RegExp(`^job ${running}: running on node `), r.text);
        assert.match(r.text, /agent running since/);
        assert.match(
            r.text,
            /logs: kubectl logs -n \S+ \S+ -c agent \(the agent\); .* -c command \(the build\); .* -c dind \(dockerd\)/,
        );

        await finished(completed);
        await jobCondition(stack, `buildkite-agent-${completed}`);
        const c = await explain(completed, stack.namespace);
        assert.match(c.text, new RegExp(`^job ${completed}: completed$`, "m"), c.text);
        assert.match(c.text, /agent exited 0/);
        assert.match(c.text, /queue dynamic\) created \S+, \d+ s after the job became runnable/);

        const p = await eventually(
            "the image pull to fail",
            async () => {
                const e = await explain(unpullable, missing.namespace);
                return /cannot start/.test(e.text) ? e : undefined;
            },
            60_000,
        );
        assert.match(
            p.text,
            /^job \S+: cannot start: (ErrImagePull|ImagePullBackOff) for container agent \(image "scaledkite.local\/missing:1"\)/,
            p.text,
        );
        assert.match(p.text, /problem: (Failed|BackOff): /);

        const u = await eventually(
            "the scheduler to give up placing it",
            async () => {
                const e = await explain(unschedulable, nowhere.namespace);
                return /problem: FailedScheduling/.test(e.text) ? e : undefined;
            },
            60_000,
        );
        assert.match(
            u.text,
            /^job \S+: waiting for a node: 0\/\d+ nodes are available: .*didn't match Pod's node affinity\/selector/,
            u.text,
        );

        const none = await explain(newUuid(), stack.namespace);
        assert.strictEqual(none.code, 3);
        assert.match(none.text, /: no worker \(no Job /);
    });
});
