/** A pipeline file's jobs as Buildkite would create them (k8s/local/pipeline.ts). Pure. */
import * as assert from "assert";
import { interpolate, pipelineJobs, pluginSource } from "../../k8s/local/pipeline";

describe("pipelineJobs", () => {
    let n = 0;
    const uuid = () => `u${n++}`;

    it("one job per parallelism, with the env its agent gets, and `{{.queue}}` filled in", () => {
        const r = pipelineJobs(
            [
                "image: ruby:alpine",
                "env: {TEAM: web}",
                "steps:",
                "  - label: build",
                "    key: b",
                '    agents: {queue: "{{.queue}}", resource_class: large}',
                "    parallelism: 2",
                "    commands: [make, make test]",
                "    artifact_paths: [out/*, log.txt]",
                "    plugins:",
                "      - kubernetes: {podSpec: {}}",
                "      - docker#v5.0.0: {image: x}",
                "  - wait",
                "  - group: g",
                "    steps:",
                "      - command: echo hi",
                "        image: alpine:latest",
            ].join("\n"),
            "q1",
            uuid,
        );
        assert.ok("jobs" in r, JSON.stringify(r));
        assert.deepStrictEqual(r.skipped, ["steps[1] wait"]);
        assert.strictEqual(r.jobs.length, 3);
        const [a, b, c] = r.jobs;
        assert.deepStrictEqual(a.agentQueryRules, ["queue=q1", "resource_class=large"]);
        assert.strictEqual(a.command, "make\nmake test");
        assert.deepStrictEqual(JSON.parse(a.env.BUILDKITE_PLUGINS), [
            { "github.com/buildkite-plugins/kubernetes-buildkite-plugin": { podSpec: {} } },
            { "github.com/buildkite-plugins/docker-buildkite-plugin#v5.0.0": { image: "x" } },
        ]);
        assert.deepStrictEqual(
            [
                a.env.BUILDKITE_IMAGE,
                a.env.TEAM,
                a.env.BUILDKITE_ARTIFACT_PATHS,
                a.env.BUILDKITE_PARALLEL_JOB,
                b.env.BUILDKITE_PARALLEL_JOB,
            ],
            ["ruby:alpine", "web", "out/*;log.txt", "0", "1"],
        );
        assert.deepStrictEqual([c.queue, c.env.BUILDKITE_IMAGE, c.env.BUILDKITE_PLUGINS], ["q1", "alpine:latest", ""]);
    });

    const bad: [string, string, RegExp][] = [
        ["not YAML", "steps: [", /^not YAML/],
        ["no steps", "env: {}", /no `steps:` list/],
        ["a step with nothing to run", "steps: [{label: x}]", /steps\[0\] has no command and no plugins/],
        ["a bad parallelism", "steps: [{command: x, parallelism: 0}]", /parallelism must be a whole number/],
    ];
    for (const [name, text, why] of bad)
        it(`says what is wrong: ${name}`, () => {
            const r = pipelineJobs(text, "q", uuid);
            assert.ok("error" in r);
            assert.match(r.error, why);
        });
});

describe("Buildkite's interpolation and plugin sources", () => {
    const cases: [string, string][] = [
        ["echo \\$HOME $$PATH", "echo $HOME $PATH"],
        ["${A} $A ${B:-fallback} ${C-x} $UNKNOWN.", "a a fallback x ."],
        ["$${X+set}", "${X+set}"],
    ];
    for (const [text, want] of cases)
        it(`interpolates ${text}`, () => assert.strictEqual(interpolate(text, { A: "a" }), want));

    const sources: [string, string][] = [
        ["kubernetes", "github.com/buildkite-plugins/kubernetes-buildkite-plugin"],
        ["docker-compose#v5", "github.com/buildkite-plugins/docker-compose-buildkite-plugin#v5"],
        ["acme/thing", "github.com/acme/thing-buildkite-plugin"],
        ["ssh://git@example.com/x/y.git", "ssh://git@example.com/x/y.git"],
        ["gitlab.com/x/y", "gitlab.com/x/y"],
    ];
    for (const [name, want] of sources) it(`resolves ${name}`, () => assert.strictEqual(pluginSource(name), want));
});
