/** The pod a step asks for (core/stepPod.ts), built from the queue's Job: tested as data. */
import * as assert from "assert";
import type { V1Container, V1Job } from "@kubernetes/client-node";
import { parseJobEvent } from "../../scheduler/core/event";
import { buildJobManifest } from "../../scheduler/core/manifest";
import { matchQueue } from "../../scheduler/core/queue";
import { readStep, KUBERNETES_PLUGIN } from "../../scheduler/core/step";
import { shapeJob } from "../../scheduler/core/stepPod";
import { interposedCommand, shellJoin } from "../../scheduler/core/interposer";
import { STEP_COMMAND_SCRIPT } from "../../scheduler/core/agentLauncher";
import type { SchedulerSettings } from "../../scheduler/core/settings";
import { anEvent, settingsFor } from "../helpers/builders";

const env = (c: V1Container | undefined) => Object.fromEntries((c?.env ?? []).map((e) => [e.name, e.value]));
const names = (cs: V1Container[] | undefined) => (cs ?? []).map((c) => c.name);

function shaped(
    settings: SchedulerSettings,
    plugin: unknown,
    extraEnv: Record<string, string> = {},
    rules = ["queue=dynamic"],
) {
    const { job } = parseJobEvent(anEvent().rules(rules).build());
    const m = matchQueue(job.agentQueryRules, Object.keys(settings.queues));
    if (!m.matched) throw new Error(m.reason);
    const base = buildJobManifest(settings, job, m.queue, m.tags);
    const read = readStep(
        {
            env: {
                ...(plugin === undefined
                    ? {}
                    : { BUILDKITE_PLUGINS: JSON.stringify([{ [KUBERNETES_PLUGIN]: plugin }]) }),
                ...extraEnv,
            },
            command: "make test",
        },
        settings.queues[m.queue].stepShape,
        m.tags,
    );
    if ("refused" in read) return { base, result: read };
    return { base, result: shapeJob(settings, m.queue, base, read.shape) };
}
const jobOf = (r: { result: unknown }): V1Job => {
    assert.ok(typeof r.result === "object" && r.result && "job" in r.result, `a Job: ${JSON.stringify(r.result)}`);
    return (r.result as { job: V1Job }).job;
};
const refusal = (r: { result: unknown }): string => {
    assert.ok(
        typeof r.result === "object" && r.result && "refused" in r.result,
        `refused: ${JSON.stringify(r.result).slice(0, 300)}`,
    );
    const p = (r.result as { refused: { field: string; problem: string } }).refused;
    return `${p.field}: ${p.problem}`;
};

describe("shapeJob", () => {
    const settings = settingsFor({
        stepShape: "plugin",
        resourceClasses: {
            test: { resources: { limits: { cpu: "500m", memory: "512Mi" } }, nodeSelector: { pool: "small" } },
        },
        queues: {
            dynamic: {},
            locked: { allowedImages: ["alpine:"], nodeSelector: { pool: "ci" }, serviceAccountName: "builder" },
        },
    });

    it("a step that asks nothing keeps the queue's pod exactly", () => {
        const r = shaped(settings, undefined);
        assert.deepStrictEqual(jobOf(r), r.base);
    });

    it("the step's image: a checkout in the agent image, then the command in the step's image, each its own bootstrap", () => {
        const pod = jobOf(shaped(settings, undefined, { BUILDKITE_IMAGE: "node:22-alpine" })).spec!.template.spec!;
        assert.deepStrictEqual(names(pod.containers), ["agent", "checkout", "container-0"]);
        assert.deepStrictEqual(names(pod.initContainers), ["copy-agent"]);
        const [agent, checkout, step] = pod.containers;
        assert.strictEqual(env(agent).BUILDKITE_CONTAINER_COUNT, "2");
        assert.strictEqual(checkout.image, agent.image);
        assert.deepStrictEqual(
            [env(checkout).BUILDKITE_CONTAINER_ID, env(checkout).BUILDKITE_BOOTSTRAP_PHASES],
            ["0", "plugin,checkout"],
        );
        assert.strictEqual(step.image, "node:22-alpine");
        assert.deepStrictEqual(step.command, ["/bin/sh", "-c", STEP_COMMAND_SCRIPT, "scaledkite-command"]);
        const e = env(step);
        assert.deepStrictEqual(
            [e.BUILDKITE_CONTAINER_ID, e.BUILDKITE_BOOTSTRAP_PHASES, e.BUILDKITE_COMMAND, e.BUILDKITE_SHELL],
            ["1", "plugin,command", "make test", "/bin/sh -e -c"],
        );
        assert.deepStrictEqual(step.securityContext, { privileged: false, allowPrivilegeEscalation: false });
        assert.ok(!JSON.stringify(step).includes("agent-token"), "the token stays in the agent container");
    });

    it("podSpec containers, checkout skipped: one bootstrap each, numbered from 0, the step image over theirs", () => {
        const pod = jobOf(
            shaped(
                settings,
                {
                    checkout: { skip: true },
                    podSpec: {
                        containers: [
                            { image: "alpine:latest", command: ["cat README.md"] },
                            {
                                name: "mountains",
                                image: "buildkite/agent:latest",
                                command: ["echo hi"],
                                env: [{ name: "M", value: "x" }],
                            },
                        ],
                    },
                },
                { BUILDKITE_IMAGE: "ruby:alpine" },
            ),
        ).spec!.template.spec!;
        assert.deepStrictEqual(
            names(pod.containers),
            ["agent", "container-0", "mountains"],
            "unnamed ones get container-<i>",
        );
        assert.strictEqual(env(pod.containers[0]).BUILDKITE_CONTAINER_COUNT, "2");
        assert.deepStrictEqual(
            pod.containers.slice(1).map((c) => [c.image, env(c).BUILDKITE_CONTAINER_ID, env(c).BUILDKITE_COMMAND]),
            [
                ["ruby:alpine", "0", "cat README.md"],
                ["ruby:alpine", "1", "echo hi"],
            ],
        );
        assert.strictEqual(env(pod.containers[2]).M, "x");
    });

    const interposers: [
        string,
        "buildkite" | "vector" | "legacy",
        string[] | undefined,
        string[] | undefined,
        string,
    ][] = [
        [
            "buildkite: one line per entry",
            "buildkite",
            ["set -eu", "echo Hello World!"],
            undefined,
            "set -eu\necho Hello World!",
        ],
        [
            "buildkite: args quoted onto the last line",
            "buildkite",
            ["ls -l", "touch"],
            ["a file.txt"],
            "ls -l\ntouch 'a file.txt'",
        ],
        ["vector: one program, quoted", "vector", ["ash"], ["-c", "set -eu\necho hi"], "ash -c 'set -eu\necho hi'"],
        ["legacy: joined, unquoted", "legacy", ["echo"], ["hello world"], "echo hello world"],
        ["no command: the step's own (args unused)", "vector", undefined, ["x"], "make test"],
    ];
    for (const [name, interposer, command, args, want] of interposers)
        it(`interposer ${name}`, () =>
            assert.strictEqual(interposedCommand(interposer, command, args, "make test"), want));
    it("quotes as sh reads it", () => assert.strictEqual(shellJoin(["a$b", "it's", "", "x;y"]), "a\\$b it\\'s  x\\;y"));

    it("sidecars run as native sidecars, with the shared volume; the queue's dind stays beside the agent", () => {
        const withDind = settingsFor({ stepShape: "plugin", dind: "rootless" });
        const pod = jobOf(shaped(withDind, { sidecars: [{ image: "nginx:latest" }] })).spec!.template.spec!;
        assert.deepStrictEqual(names(pod.initContainers), ["copy-agent", "sidecar-0"]);
        assert.deepStrictEqual(names(pod.containers), ["agent", "checkout", "container-0", "dind"]);
        const sidecar = pod.initContainers![1];
        assert.strictEqual(sidecar.restartPolicy, "Always");
        assert.ok(sidecar.volumeMounts!.some((m) => m.mountPath === "/workspace"));
    });

    it("the step's patch: env merged by name, a command container's command becomes its BUILDKITE_COMMAND", () => {
        const pod = jobOf(
            shaped(settings, {
                podSpec: {
                    containers: [{ name: "mountains", image: "alpine:latest", command: ['echo "i love guyaquil"'] }],
                },
                podSpecPatch: {
                    containers: [
                        {
                            name: "mountains",
                            command: ['echo "i love quito"'],
                            env: [{ name: "MOUNTAIN", value: "cotopaxi" }],
                        },
                    ],
                },
            }),
        ).spec!.template.spec!;
        const step = pod.containers.find((c) => c.name === "mountains")!;
        assert.strictEqual(env(step).BUILDKITE_COMMAND, 'echo "i love quito"');
        assert.strictEqual(env(step).MOUNTAIN, "cotopaxi");
        assert.deepStrictEqual(
            step.command,
            ["/bin/sh", "-c", STEP_COMMAND_SCRIPT, "scaledkite-command"],
            "still the bootstrap",
        );
    });

    const refused: [string, SchedulerSettings, unknown, Record<string, string>, string[], RegExp][] = [
        [
            "a patch of the agent's command",
            settings,
            { podSpecPatch: { containers: [{ name: "agent", command: ["sh"] }] } },
            {},
            ["queue=dynamic"],
            /^plugins.kubernetes.podSpecPatch.containers\[0\]: changes the command of the agent container/,
        ],
        [
            "a patch of the agent's env",
            settings,
            { podSpecPatch: { containers: [{ name: "agent", env: [{ name: "BUILDKITE_HOOKS_PATH", value: "/x" }] }] } },
            {},
            ["queue=dynamic"],
            /changes the agent container, which queue dynamic sets/,
        ],
        [
            "another service account",
            settings,
            { podSpecPatch: { serviceAccountName: "admin" } },
            {},
            ["queue=locked"],
            /changes serviceAccountName, which queue locked sets/,
        ],
        [
            "the queue's node selector",
            settings,
            { podSpecPatch: { nodeSelector: { pool: "gpu" } } },
            {},
            ["queue=locked"],
            /changes nodeSelector.pool/,
        ],
        [
            "the PriorityClass the stack maps the job's priority to (a step may not jump the line)",
            settingsFor({ stepShape: "plugin", priorityClasses: { "0": "ci-builds" }, queues: { dynamic: {} } }),
            { podSpecPatch: { priorityClassName: "system-cluster-critical" } },
            {},
            ["queue=dynamic"],
            /changes priorityClassName, which queue dynamic sets and a step may not change/,
        ],
        [
            "the token volume",
            settings,
            { podSpecPatch: { volumes: [{ name: "agent-token", emptyDir: {} }] } },
            {},
            ["queue=dynamic"],
            /changes the agent-token volume/,
        ],
        [
            "an image the queue does not allow",
            settings,
            undefined,
            { BUILDKITE_IMAGE: "node:22" },
            ["queue=locked"],
            /^image: "node:22" is not an image queue locked allows \(it allows images starting with alpine:\)/,
        ],
        [
            "a podSpec image the queue does not allow",
            settings,
            { podSpec: { containers: [{ image: "evil:1" }] } },
            {},
            ["queue=locked"],
            /^plugins.kubernetes.podSpec.containers\[0\].image: "evil:1" is not an image/,
        ],
        [
            "a container image that does not parse",
            settings,
            { podSpec: { containers: [{ image: "buildkite/agent:latest plus some extra junk" }] } },
            {},
            ["queue=dynamic"],
            /invalid reference format/,
        ],
        [
            "an unknown resource class",
            settings,
            undefined,
            {},
            ["queue=dynamic", "resource_class=huge"],
            /^agents.resource_class: "huge" is not a resource class of this stack \(test\)/,
        ],
    ];
    for (const [name, s, plugin, extra, rules, want] of refused)
        it(`refuses ${name}, naming the field`, () => assert.match(refusal(shaped(s, plugin, extra, rules)), want));

    it("a step may set a PriorityClass where the stack maps none (as on agent-stack-k8s)", () => {
        const pod = jobOf(shaped(settings, { podSpecPatch: { priorityClassName: "ci-urgent" } })).spec!.template.spec!;
        assert.strictEqual(pod.priorityClassName, "ci-urgent");
    });

    it("a resource class sizes the command containers and adds its node selector", () => {
        const pod = jobOf(shaped(settings, undefined, {}, ["queue=dynamic", "resource_class=test"])).spec!.template
            .spec!;
        const step = pod.containers.find((c) => c.name === "container-0")!;
        assert.deepStrictEqual(step.resources, { limits: { cpu: "500m", memory: "512Mi" } });
        assert.strictEqual(pod.nodeSelector?.pool, "small");
    });

    it("metadata adds labels and annotations, never replacing Scaledkite's; the deadline and checkout flags apply", () => {
        const job = jobOf(
            shaped(settings, {
                metadata: {
                    labels: { "some-label": "wow", "buildkite.com/job-uuid": "forged" },
                    annotations: { "some-annotation": "cool" },
                },
                jobActiveDeadlineSeconds: 60,
                checkout: { cloneFlags: "--depth=1", noSubmodules: true },
            }),
        );
        const meta = job.spec!.template.metadata!;
        assert.strictEqual(meta.labels!["some-label"], "wow");
        assert.notStrictEqual(meta.labels!["buildkite.com/job-uuid"], "forged");
        assert.strictEqual(meta.annotations!["some-annotation"], "cool");
        assert.strictEqual(job.spec!.activeDeadlineSeconds, 60);
        const agent = env(job.spec!.template.spec!.containers[0]);
        assert.deepStrictEqual(
            [agent.BUILDKITE_GIT_CLONE_FLAGS, agent.BUILDKITE_NO_GIT_SUBMODULES],
            ["--depth=1", "true"],
        );
    });

    it("a non-root pod still runs the agent, copy-agent and checkout as the images' root", () => {
        const pod = jobOf(
            shaped(settings, {
                podSpec: {
                    containers: [{ image: "alpine:latest", command: ["id"] }],
                    securityContext: { runAsNonRoot: true, runAsUser: 1000 },
                },
            }),
        ).spec!.template.spec!;
        assert.deepStrictEqual(pod.securityContext, { runAsNonRoot: true, runAsUser: 1000 });
        for (const c of [pod.containers[0], pod.containers[1], pod.initContainers![0]])
            assert.deepStrictEqual(
                [c.name, c.securityContext?.runAsUser, c.securityContext?.runAsNonRoot],
                [c.name, 0, false],
            );
        assert.strictEqual(pod.containers[2].securityContext?.runAsUser, undefined, "the step runs as the pod says");
    });
});
