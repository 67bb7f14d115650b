/** What a job's step asks of its pod (core/step.ts): table-driven over the job's env. Pure. */
import * as assert from "assert";
import { imageProblem, KUBERNETES_PLUGIN, readStep, type StepResult } from "../../scheduler/core/step";
import type { StepShapeMode } from "../../scheduler/core/settings";

const plugins = (...entries: object[]) => JSON.stringify(entries);
const k8s = (config: unknown) => ({ [KUBERNETES_PLUGIN]: config });

describe("readStep", () => {
    const cases: [string, Record<string, string>, StepShapeMode, string[], Partial<StepResult> | RegExp][] = [
        ["no image, no plugins: nothing asked", {}, "plugin", [], { shape: { command: "make", unknownFields: [] } }],
        [
            "the step's image",
            { BUILDKITE_IMAGE: "node:22-alpine" },
            "image",
            [],
            { shape: { command: "make", unknownFields: [], image: "node:22-alpine" } },
        ],
        [
            "stepShape none reads nothing, not even a bad image",
            { BUILDKITE_IMAGE: "Not An Image", BUILDKITE_PLUGINS: "{" },
            "none",
            ["resource_class=large"],
            { shape: { command: "make", unknownFields: [] } },
        ],
        [
            "stepShape image ignores the plugin and the resource class",
            { BUILDKITE_PLUGINS: plugins(k8s({ podSpec: {} })) },
            "image",
            ["resource_class=large"],
            { shape: { command: "make", unknownFields: [] } },
        ],
        [
            "the resource_class tag",
            {},
            "plugin",
            ["queue=q", "resource_class=large"],
            { shape: { command: "make", unknownFields: [], resourceClass: "large" } },
        ],
        [
            "the kubernetes plugin, with a field this version does not know",
            {
                BUILDKITE_PLUGINS: plugins(
                    { "github.com/x/y-buildkite-plugin#v1": {} },
                    k8s({ podSpec: {}, shiny: 1 }),
                ),
            },
            "plugin",
            [],
            { shape: { command: "make", unknownFields: ["shiny"], plugin: { podSpec: {}, shiny: 1 } as object } },
        ],
        [
            "a null kubernetes config is an empty one",
            { BUILDKITE_PLUGINS: plugins(k8s(null)) },
            "plugin",
            [],
            { shape: { command: "make", unknownFields: [], plugin: {} } },
        ],
        [
            "the shorthand or a #ref is not the kubernetes plugin (the agent would run it as a plugin)",
            { BUILDKITE_PLUGINS: plugins({ kubernetes: {} }, { [`${KUBERNETES_PLUGIN}#v1`]: {} }) },
            "plugin",
            [],
            { shape: { command: "make", unknownFields: [] } },
        ],
        [
            "an image that does not parse",
            { BUILDKITE_IMAGE: "alpine:latest plus junk" },
            "image",
            [],
            /^image: "alpine:latest plus junk" is not a valid image reference \(invalid reference format/,
        ],
        [
            "BUILDKITE_PLUGINS not JSON",
            { BUILDKITE_PLUGINS: "[{" },
            "plugin",
            [],
            /^plugins: BUILDKITE_PLUGINS is not JSON/,
        ],
        [
            "a plugin entry with two names",
            { BUILDKITE_PLUGINS: plugins({ a: 1, b: 2 }) },
            "plugin",
            [],
            /^plugins\[0\]: must be one plugin name/,
        ],
        [
            "the kubernetes plugin twice",
            { BUILDKITE_PLUGINS: plugins(k8s({}), k8s({})) },
            "plugin",
            [],
            /^plugins.kubernetes: is given more than once/,
        ],
        [
            "a config that is a list",
            { BUILDKITE_PLUGINS: plugins(k8s([])) },
            "plugin",
            [],
            /^plugins.kubernetes: must be an object of settings, got a list/,
        ],
        [
            "podSpec of the wrong type",
            { BUILDKITE_PLUGINS: plugins(k8s({ podSpec: "x" })) },
            "plugin",
            [],
            /^plugins.kubernetes.podSpec: must be a pod spec \(an object\), got string/,
        ],
        [
            "sidecars not a list",
            { BUILDKITE_PLUGINS: plugins(k8s({ sidecars: {} })) },
            "plugin",
            [],
            /^plugins.kubernetes.sidecars: must be a list of containers/,
        ],
        [
            "an unknown interposer",
            { BUILDKITE_PLUGINS: plugins(k8s({ commandParams: { interposer: "zsh" } })) },
            "plugin",
            [],
            /^plugins.kubernetes.commandParams.interposer: must be buildkite, vector or legacy, got "zsh"/,
        ],
        [
            "checkout.skip not a boolean",
            { BUILDKITE_PLUGINS: plugins(k8s({ checkout: { skip: "yes" } })) },
            "plugin",
            [],
            /^plugins.kubernetes.checkout.skip: must be a boolean, got string/,
        ],
        [
            "metadata labels not strings",
            { BUILDKITE_PLUGINS: plugins(k8s({ metadata: { labels: { a: 1 } } })) },
            "plugin",
            [],
            /^plugins.kubernetes.metadata.labels: must be a map of strings/,
        ],
        [
            "a deadline that is not a whole number",
            { BUILDKITE_PLUGINS: plugins(k8s({ jobActiveDeadlineSeconds: 1.5 })) },
            "plugin",
            [],
            /^plugins.kubernetes.jobActiveDeadlineSeconds: must be a whole number of seconds, got 1.5/,
        ],
    ];
    for (const [name, env, mode, tags, want] of cases) {
        it(name, () => {
            const got = readStep({ env, command: "make" }, mode, tags);
            if (want instanceof RegExp) {
                assert.ok("refused" in got, `refused: ${JSON.stringify(got)}`);
                assert.match(`${got.refused.field}: ${got.refused.problem}`, want);
            } else assert.deepStrictEqual(got, want);
        });
    }

    it("never reads a prototype key as the job's env", () => {
        const env = Object.create({ BUILDKITE_IMAGE: "evil:1", BUILDKITE_PLUGINS: "[{" }) as Record<string, string>;
        assert.deepStrictEqual(readStep({ env, command: "" }, "plugin", []), {
            shape: { command: "", unknownFields: [] },
        });
    });
});

describe("imageProblem (the distribution reference grammar)", () => {
    const ok = [
        "alpine",
        "alpine:3.20",
        "docker.io/library/node:22-alpine",
        "localhost:5000/a/b:Tag_1",
        "ghcr.io/o/r@sha256:" + "a".repeat(64),
        "[::1]:5000/x",
    ];
    const bad: [string, RegExp][] = [
        ["", /empty/],
        ["ubuntu:", /invalid reference format/],
        ["Alpine", /upper-case/],
        ["a b", /invalid reference format/],
        ["-a", /invalid reference format/],
        ["a@sha256:short", /invalid reference format/],
    ];
    for (const ref of ok) it(`takes ${ref}`, () => assert.strictEqual(imageProblem(ref), undefined));
    for (const [ref, why] of bad)
        it(`refuses ${JSON.stringify(ref)}`, () => assert.match(imageProblem(ref) ?? "", why));
});
