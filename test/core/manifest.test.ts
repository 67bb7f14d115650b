import * as assert from "assert";
import { parseJobEvent } from "../../scheduler/core/event";
import {
    AGENT_EXIT_NOT_RUN,
    AGENT_HOOKS_PATH,
    COMMAND_SCRIPT,
    LAUNCHER_SCRIPT,
} from "../../scheduler/core/agentLauncher";
import { AGENT_EXIT_CANNOT_ACQUIRE, AGENT_EXITED_MARK } from "../../scheduler/core/agentLauncher";
import { buildJobManifest } from "../../scheduler/core/manifest";
import { matchQueue } from "../../scheduler/core/queue";
import { type SchedulerSettings } from "../../scheduler/core/settings";
import { anEvent, sampleEvent, settingsFor } from "../helpers/builders";
import { DIND_SCRIPT, DOCKER_HOST } from "../../scheduler/core/dind";
import { MAX_ANNOTATION_LENGTH, jobName, labelValue } from "../../scheduler/core/names";

function manifestFor(settings: SchedulerSettings, event = sampleEvent()) {
    const { job } = parseJobEvent(event);
    const m = matchQueue(job.agentQueryRules, Object.keys(settings.queues));
    if (!m.matched) throw new Error(m.reason);
    return buildJobManifest(settings, job, m.queue, m.tags);
}

const env = (c: any) => Object.fromEntries((c.env ?? []).map((e: any) => [e.name, e.value ?? e.valueFrom]));

describe("buildJobManifest", () => {
    const settings = settingsFor();
    const job = manifestFor(settings);
    const pod = job.spec!.template.spec!;
    const agent = pod.containers[0];
    const command = pod.containers[1];
    const mountsOf = (c: any): Record<string, string> =>
        Object.fromEntries(c.volumeMounts.map((m: any) => [m.name, m.mountPath]));

    it("names the Job after the Buildkite job, deterministically", () => {
        assert.strictEqual(job.metadata!.name, "buildkite-agent-9e6c3f19-4fdb-4e8e-b925-28cd7504e17f");
        assert.strictEqual(jobName("bk-", "ABC"), "bk-abc");
        assert.deepStrictEqual(manifestFor(settings), job, "same input, same manifest");
        assert.ok(job.metadata!.name!.length <= 63);
    });

    it("runs the stock agent for exactly this job, with the token as a file from its Secret, mounted in the agent container alone", () => {
        assert.strictEqual(agent.image, settings.queues.dynamic.image);
        assert.deepStrictEqual(
            agent.command,
            ["/bin/sh", "-c", LAUNCHER_SCRIPT, "scaledkite-agent"],
            "the launcher runs the image's entrypoint",
        );
        assert.deepStrictEqual(agent.args, ["start"]);
        const e = env(agent);
        assert.strictEqual(e.BUILDKITE_AGENT_ACQUIRE_JOB, "9e6c3f19-4fdb-4e8e-b925-28cd7504e17f");
        assert.strictEqual(
            e.BUILDKITE_AGENT_TOKEN,
            "file:///buildkite/agent-token/token",
            "a path the agent reads, not the token",
        );
        const tokenVolume = pod.volumes!.find((v) => v.secret?.secretName === "scaledkite-agent-token")!;
        assert.deepStrictEqual(tokenVolume.secret, {
            secretName: "scaledkite-agent-token",
            items: [{ key: "token", path: "token" }],
            defaultMode: 0o400,
        });
        assert.deepStrictEqual(
            agent.volumeMounts!.find((m) => m.name === tokenVolume.name),
            { name: tokenVolume.name, mountPath: "/buildkite/agent-token", readOnly: true },
        );
        assert.ok(
            !JSON.stringify([agent.env, agent.envFrom]).includes("scaledkite-agent-token"),
            "no process's environment holds the token",
        );
        assert.strictEqual(e.BUILDKITE_AGENT_TAGS, "queue=dynamic");
        assert.ok(!JSON.stringify(job).includes("bk-agent-token"), "no token value anywhere");
        assert.strictEqual(
            e.BUILDKITE_KUBERNETES_EXEC,
            "true",
            "the agent's Kubernetes mode: the job runs in the command container",
        );
        assert.strictEqual(e.BUILDKITE_CONTAINER_COUNT, "1");
    });

    it("runs the job in a second container that has no way to the registration token", () => {
        assert.deepStrictEqual(
            pod.containers.map((c) => c.name),
            ["agent", "command"],
        );
        assert.strictEqual(command.image, agent.image);
        assert.deepStrictEqual(command.command, ["/bin/sh", "-c", COMMAND_SCRIPT, "scaledkite-command"]);
        assert.strictEqual(env(command).BUILDKITE_CONTAINER_ID, "0");
        const tokenRefs = (c: any) =>
            JSON.stringify([c.env, c.envFrom, c.volumeMounts]).match(/scaledkite-agent-token/g);
        assert.strictEqual(tokenRefs(command), null, "neither an env var nor a mount of the token Secret");
        assert.strictEqual(pod.shareProcessNamespace, undefined, "the build cannot see the agent's processes");
        // What the two share: the job context directory (the agent's socket) and nothing else.
        const shared = Object.keys(mountsOf(agent)).filter((v) => v in mountsOf(command));
        assert.deepStrictEqual(shared, ["workspace"]);
        assert.strictEqual(mountsOf(agent).workspace, "/workspace");
        assert.strictEqual(env(agent).BUILDKITE_HOOKS_PATH, AGENT_HOOKS_PATH);
        assert.ok(
            AGENT_HOOKS_PATH.startsWith(mountsOf(agent).scaledkite + "/"),
            "the agent's hooks are on the agent's own volume",
        );
        assert.ok(!("scaledkite" in mountsOf(command)), "so a build cannot plant an agent hook");
        assert.strictEqual(pod.initContainers, undefined, "no dind by default");
        const withDind = manifestFor(settingsFor({ dind: "rootless" })).spec!.template.spec!;
        assert.strictEqual(
            withDind.containers.some((c) => c.name === "dind" && JSON.stringify(c).includes("agent-token")),
            false,
            "nor does the dind sidecar mount it",
        );
    });

    it("labels and annotates so a person finds the Buildkite job, build and pipeline", () => {
        const labels = job.metadata!.labels!;
        assert.strictEqual(labels["buildkite.com/job-uuid"], "9e6c3f19-4fdb-4e8e-b925-28cd7504e17f");
        assert.strictEqual(labels["buildkite.com/pipeline-slug"], "my-pipeline");
        assert.strictEqual(labels["buildkite.com/build-number"], "123456");
        assert.strictEqual(labels["scaledkite.io/queue"], "dynamic");
        assert.strictEqual(labels["app.kubernetes.io/managed-by"], "scaledkite");
        assert.strictEqual(
            job.metadata!.annotations!["buildkite.com/job-url"],
            "https://buildkite.com/my-org/my-pipeline/builds/123456#9e6c3f19-4fdb-4e8e-b925-28cd7504e17f",
        );
        assert.deepStrictEqual(job.spec!.template.metadata!.labels, labels, "the pod carries them too");
    });

    // dind is off by default (README, Security model); a queue that turns it on:
    const dindPod = manifestFor(settingsFor({ dind: "privileged" })).spec!.template.spec!;

    it("runs docker-in-docker as a privileged container beside the agent, and only it, started in the same kubelet pass", () => {
        const [agent, command, dind] = dindPod.containers;
        assert.deepStrictEqual(
            dindPod.containers.map((c) => c.name),
            ["agent", "command", "dind"],
        );
        assert.strictEqual(dindPod.initContainers, undefined, "no init container holds the agent back a kubelet pass");
        assert.strictEqual(dind.restartPolicy, undefined);
        assert.strictEqual(dind.securityContext!.privileged, true);
        assert.deepStrictEqual(dind.command, ["/bin/sh", "-c", DIND_SCRIPT, "scaledkite-dind"]);
        assert.ok(DIND_SCRIPT.includes(AGENT_EXITED_MARK), "it stops once the agent has exited");
        assert.strictEqual(mountsOf(dind).workspace, "/workspace", "where the agent marks its exit");
        assert.ok(dind.volumeMounts!.find((m) => m.name === "workspace")!.readOnly, "which it only reads");
        assert.strictEqual(dind.lifecycle, undefined, "nothing holds the agent back while dockerd boots");
        assert.ok(
            COMMAND_SCRIPT.includes('until [ -S "$sock" ] && { ! command -v docker >/dev/null 2>&1 || docker version'),
            "the command container waits for dockerd, just before its bootstrap",
        );
        assert.strictEqual(
            dind.startupProbe,
            undefined,
            "no startup probe: it would add up to a probe period (1 s) to every start",
        );
        assert.strictEqual(env(command).DOCKER_HOST, DOCKER_HOST);
        assert.strictEqual(env(agent).DOCKER_HOST, undefined, "the agent does not use docker");
        assert.match(DOCKER_HOST, /^unix:\/\//);
        for (const c of [agent, command]) {
            assert.strictEqual(c.securityContext!.privileged, false);
            assert.strictEqual(c.securityContext!.allowPrivilegeEscalation, false);
        }
        assert.strictEqual(mountsOf(dind).build, mountsOf(command).build, "the build directory is shared");
        assert.strictEqual(
            mountsOf(dind)["docker-socket"],
            mountsOf(command)["docker-socket"],
            "so is dockerd's socket",
        );
        assert.ok(DOCKER_HOST.startsWith(`unix://${mountsOf(command)["docker-socket"]}/`));
    });

    it("passes dind arguments that start with dockerd, so the entrypoint adds no TCP listener", () => {
        const dind = dindPod.containers[2];
        assert.deepStrictEqual(dind.args, ["dockerd", `--host=${DOCKER_HOST}`]);
        assert.ok(!JSON.stringify(dindPod).includes("tcp://"), "no TCP listener anywhere in the pod");
        assert.strictEqual(dind.ports, undefined);
    });

    it("ties the agent's cancel and signal grace periods to the pod's termination grace", () => {
        assert.strictEqual(pod.terminationGracePeriodSeconds, 60);
        assert.strictEqual(env(agent).BUILDKITE_CANCEL_GRACE_PERIOD, "55");
        assert.strictEqual(env(agent).BUILDKITE_SIGNAL_GRACE_PERIOD_SECONDS, "50");
    });

    it("never restarts a pod, fails fast when the job cannot be acquired, and cleans up", () => {
        assert.strictEqual(pod.restartPolicy, "Never");
        assert.strictEqual(pod.automountServiceAccountToken, false);
        assert.strictEqual(job.spec!.backoffLimit, 1);
        assert.strictEqual(job.spec!.activeDeadlineSeconds, 3 * 3600);
        assert.strictEqual(job.spec!.ttlSecondsAfterFinished, 600);
        const rules = job.spec!.podFailurePolicy!.rules;
        assert.deepStrictEqual(
            [rules[0].action, rules[0].onExitCodes!.values],
            ["FailJob", [AGENT_EXIT_CANNOT_ACQUIRE]],
        );
        assert.deepStrictEqual(
            [rules[1].action, rules[1].onExitCodes!.values],
            ["Count", [AGENT_EXIT_NOT_RUN]],
            "a worker whose agent ran nothing fails and is retried",
        );
    });

    const variants: {
        name: string;
        config: Record<string, unknown>;
        check: (m: ReturnType<typeof manifestFor>) => void;
    }[] = [
        {
            name: "rootless dind: the stock rootless image as uid 1000, its data directory's parent on an emptyDir, the same socket",
            config: { dind: "rootless" },
            check: (m) => {
                const p = m.spec!.template.spec!;
                const dind = p.containers[2];
                assert.strictEqual(dind.image, "docker:28.5.2-dind-rootless");
                assert.deepStrictEqual(dind.securityContext, {
                    privileged: true,
                    runAsUser: 1000,
                    runAsGroup: 1000,
                    runAsNonRoot: true,
                });
                assert.deepStrictEqual(
                    dind.args,
                    ["dockerd", `--host=${DOCKER_HOST}`],
                    "the entrypoint runs it inside rootlesskit, as uid 1000",
                );
                assert.strictEqual(
                    mountsOf(dind).docker,
                    "/home/rootless/.local/share",
                    "dockerd makes its data root itself, so it may chmod it",
                );
                assert.strictEqual(mountsOf(dind)["docker-socket"], mountsOf(p.containers[1])["docker-socket"]);
                assert.strictEqual(env(p.containers[1]).DOCKER_HOST, DOCKER_HOST);
            },
        },
        {
            name: "dind off: no sidecar, no DOCKER_HOST, nothing privileged",
            config: { dind: false },
            check: (m) => {
                const p = m.spec!.template.spec!;
                assert.strictEqual(p.initContainers, undefined);
                assert.deepStrictEqual(
                    p.containers.map((c) => c.name),
                    ["agent", "command"],
                );
                assert.strictEqual(env(p.containers[1]).DOCKER_HOST, undefined);
                assert.ok(!JSON.stringify(m).includes('"privileged":true'));
            },
        },
        {
            name: "node selector, tolerations, resources, deadline and TTL from config",
            config: {
                nodeSelector: { pool: "ci" },
                tolerations: [{ key: "ci", operator: "Exists", effect: "NoSchedule" }],
                resources: { command: { requests: { cpu: "2" }, limits: { memory: "4Gi" } } },
                activeDeadlineSeconds: 600,
                ttlSecondsAfterFinished: 0,
            },
            check: (m) => {
                const p = m.spec!.template.spec!;
                assert.deepStrictEqual(p.nodeSelector, { pool: "ci" });
                assert.deepStrictEqual(p.tolerations, [{ key: "ci", operator: "Exists", effect: "NoSchedule" }]);
                assert.deepStrictEqual(p.containers[1].resources, {
                    requests: { cpu: "2" },
                    limits: { memory: "4Gi" },
                });
                assert.deepStrictEqual(
                    p.containers[0].resources,
                    { requests: { cpu: "100m", memory: "128Mi" } },
                    "the agent keeps its small default",
                );
                assert.strictEqual(m.spec!.activeDeadlineSeconds, 600);
                assert.strictEqual(m.spec!.ttlSecondsAfterFinished, 0);
            },
        },
        {
            name: "env and git credentials come from their Secrets",
            config: { env: "<secret>", gitCredentials: "<secret>" },
            check: (m) => {
                const a = m.spec!.template.spec!.containers[1];
                assert.deepStrictEqual(a.envFrom, [{ secretRef: { name: "scaledkite-env" } }]);
                assert.deepStrictEqual(
                    m.spec!.template.spec!.containers[0].envFrom,
                    a.envFrom,
                    "the agent reads its own settings (e.g. its endpoint) there too",
                );
                assert.strictEqual(
                    env(m.spec!.template.spec!.containers[0]).GIT_CONFIG_KEY_0,
                    undefined,
                    "git runs in the command container only",
                );
                assert.strictEqual(env(a).GIT_CONFIG_KEY_0, "credential.helper");
                assert.match(
                    env(a).GIT_CONFIG_VALUE_0,
                    /^!f\(\) \{ if \[ "\$1" = get \]; then git credential-store --file=\/buildkite\/secrets\/git-credentials get; fi; \}; f$/,
                    "only `get` reaches credential-store: the read-only file is never written",
                );
                assert.deepStrictEqual(
                    m.spec!.template.spec!.volumes!.find((v) => v.name === "secrets")!.secret!.secretName,
                    "scaledkite-git-credentials",
                );
            },
        },
        {
            name: "agent tags from config and the job's other rules",
            config: { agentTags: ["os=linux"] },
            check: (m) =>
                assert.strictEqual(
                    env(m.spec!.template.spec!.containers[0]).BUILDKITE_AGENT_TAGS,
                    "queue=dynamic,arch=arm64,os=linux",
                ),
        },
        {
            name: "the job prefix shapes the name, the image setting leaves it alone",
            config: { jobPrefix: "bk-", image: "example.com/agent:1" },
            check: (m) => {
                assert.strictEqual(m.metadata!.name, "bk-9e6c3f19-4fdb-4e8e-b925-28cd7504e17f");
                assert.strictEqual(m.spec!.template.spec!.containers[0].image, "example.com/agent:1");
            },
        },
        {
            name: "git over SSH: the key and known hosts are mounted and git is told to use them",
            config: { gitSshKey: "<secret>", gitKnownHosts: "github.com ssh-ed25519 AAAA" },
            check: (m) => {
                const p = m.spec!.template.spec!;
                assert.strictEqual(p.volumes!.find((v) => v.name === "ssh")!.secret!.secretName, "scaledkite-git-ssh");
                assert.strictEqual(p.volumes!.find((v) => v.name === "ssh")!.secret!.defaultMode, 0o400);
                assert.ok(
                    !p.containers[0].volumeMounts!.some((v) => v.name === "ssh"),
                    "the agent container does not mount the key",
                );
                assert.match(
                    env(p.containers[1]).GIT_SSH_COMMAND,
                    /-i \/buildkite\/ssh\/id_ssh .*UserKnownHostsFile=\/buildkite\/ssh\/known_hosts -o StrictHostKeyChecking=yes/,
                );
            },
        },
        {
            name: "hooks come from their ConfigMap, executable, in the command container, where the job's hooks run",
            config: { hooks: { environment: "export A=1" } },
            check: (m) => {
                const p = m.spec!.template.spec!;
                assert.deepStrictEqual(p.volumes!.find((v) => v.name === "hooks")!.configMap, {
                    name: "scaledkite-hooks",
                    defaultMode: 0o755,
                });
                assert.strictEqual(
                    env(p.containers[0]).BUILDKITE_ADDITIONAL_HOOKS_PATHS,
                    "/buildkite/hooks",
                    "the agent passes the path to the bootstrap",
                );
                assert.ok(
                    p.containers[1].volumeMounts!.some((v) => v.name === "hooks" && v.mountPath === "/buildkite/hooks"),
                );
            },
        },
        {
            name: "per-queue affinity, service account and envFrom",
            config: {
                queues: {
                    dynamic: {
                        affinity: {
                            nodeAffinity: {
                                requiredDuringSchedulingIgnoredDuringExecution: {
                                    nodeSelectorTerms: [
                                        { matchExpressions: [{ key: "arch", operator: "In", values: ["arm64"] }] },
                                    ],
                                },
                            },
                        },
                        serviceAccountName: "builder",
                        envFrom: [{ configMapRef: { name: "build-env" } }],
                    },
                },
                env: "<secret>",
            },
            check: (m) => {
                const p = m.spec!.template.spec!;
                assert.strictEqual(p.serviceAccountName, "builder");
                assert.ok(p.affinity!.nodeAffinity);
                assert.deepStrictEqual(p.containers[1].envFrom, [
                    { secretRef: { name: "scaledkite-env" } },
                    { configMapRef: { name: "build-env" } },
                ]);
            },
        },
        {
            name: "a Fargate queue's pods carry the label its Fargate profile selects, and no dind",
            config: { fargateSubnetIds: ["subnet-0abc"], queues: { dynamic: { fargate: true, dind: false } } },
            check: (m) => {
                assert.strictEqual(m.spec!.template.metadata!.labels!["scaledkite.io/fargate-queue"], "dynamic");
                assert.strictEqual(m.spec!.template.spec!.initContainers, undefined);
            },
        },
        {
            name: "with ECR registries, workers use the service account bound to their role and run the login hook beside the user's hooks",
            config: {
                ecrRegistries: ["111122223333.dkr.ecr.us-east-1.amazonaws.com"],
                hooks: { environment: "echo hi" },
            },
            check: (m) => {
                const p = m.spec!.template.spec!;
                assert.strictEqual(p.serviceAccountName, "scaledkite-worker");
                assert.strictEqual(p.automountServiceAccountToken, false, "no Kubernetes API token in the pod");
                assert.strictEqual(
                    env(p.containers[0]).BUILDKITE_ADDITIONAL_HOOKS_PATHS,
                    "/buildkite/hooks,/buildkite/scaledkite-hooks",
                    "the user's hooks run first",
                );
                assert.strictEqual(
                    env(p.containers[1]).SCALEDKITE_SERVICE_ACCOUNT!.fieldRef.fieldPath,
                    "spec.serviceAccountName",
                );
                assert.deepStrictEqual(p.volumes!.find((v) => v.name === "scaledkite-hooks")!.configMap, {
                    name: "scaledkite-ecr-login",
                    defaultMode: 0o755,
                });
                assert.ok(
                    p.containers[1].volumeMounts!.some(
                        (v) => v.mountPath === "/buildkite/scaledkite-hooks" && v.readOnly,
                    ),
                );
            },
        },
        {
            name: "a queue's own service account wins over the workers' one",
            config: {
                ecrRegistries: ["111122223333.dkr.ecr.us-east-1.amazonaws.com"],
                queues: { dynamic: { serviceAccountName: "builder" } },
            },
            check: (m) => assert.strictEqual(m.spec!.template.spec!.serviceAccountName, "builder"),
        },
        {
            name: "a pod spec patch for anything else, applied last",
            config: {
                podSpecPatch: {
                    priorityClassName: "ci",
                    containers: [{ name: "agent", workingDir: "/work" }],
                    automountServiceAccountToken: null,
                },
            },
            check: (m) => {
                const p = m.spec!.template.spec!;
                assert.strictEqual(p.priorityClassName, "ci");
                assert.strictEqual(p.containers[0].workingDir, "/work");
                assert.strictEqual(p.containers[0].image, "buildkite/agent:3.138.3", "the rest of the agent stays");
                assert.strictEqual(
                    p.containers[1].workingDir,
                    "/buildkite/builds",
                    "the command container is not touched",
                );
                assert.strictEqual(p.automountServiceAccountToken, undefined);
            },
        },
    ];
    for (const v of variants) {
        it(v.name, () => {
            const event = v.name.startsWith("agent tags")
                ? anEvent().uuid("9e6c3f19-4fdb-4e8e-b925-28cd7504e17f").rules(["arch=arm64", "queue=dynamic"]).build()
                : sampleEvent();
            v.check(manifestFor(settingsFor(v.config), event));
        });
    }

    it("cuts every annotation taken from the job's text, so a huge value cannot make every create fail", () => {
        const huge = "x".repeat(300_000);
        const m = manifestFor(
            settings,
            anEvent()
                .uuid("9e6c3f19-4fdb-4e8e-b925-28cd7504e17f")
                .with((e) => {
                    e.detail.build.branch = huge;
                    e.detail.build.commit = huge;
                    e.detail.build.uuid = huge;
                    e.detail.job.step_key = huge;
                    e.detail.job.label = huge;
                    e.detail.pipeline.slug = huge;
                })
                .build(),
        );
        const annotations = m.spec!.template.metadata!.annotations!;
        for (const [k, v] of Object.entries(annotations))
            assert.ok(v.length <= MAX_ANNOTATION_LENGTH, `${k}: ${v.length} characters`);
        assert.ok(
            JSON.stringify(annotations).length < (256 * 1024) / 8,
            "far below the API server's 256 KiB for all annotations",
        );
        assert.strictEqual(annotations["buildkite.com/build-branch"], `${"x".repeat(MAX_ANNOTATION_LENGTH - 1)}…`);
    });

    it("keeps node autoscalers from evicting a running build", () => {
        const a = job.spec!.template.metadata!.annotations!;
        assert.strictEqual(a["karpenter.sh/do-not-disrupt"], "true");
        assert.strictEqual(a["cluster-autoscaler.kubernetes.io/safe-to-evict"], "false");
    });

    it("makes label values from free text", () => {
        assert.strictEqual(labelValue("my pipeline/with:odd chars"), "my-pipeline-with-odd-chars");
        assert.strictEqual(labelValue("-x-"), "x");
        assert.strictEqual(labelValue("a".repeat(80))!.length, 63);
        assert.strictEqual(labelValue("///"), undefined);
    });
});
