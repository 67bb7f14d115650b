/** The worker shape and Pod Security level a stack's queues allow. Pure; the API server's side is in test/integration/rbac.test.ts. */
import * as assert from "assert";
import { podSecurityLevel, workerShape } from "../k8s/workerPolicy";
import { settingsFor } from "./helpers/builders";

describe("workerShape", () => {
    it("lists every queue's images (dind's only where it runs, and any a pod spec patch names) and service accounts", () => {
        const { queues } = settingsFor({
            queues: {
                dynamic: {},
                plain: { dind: false, image: "example.com/agent:2", serviceAccountName: "deployer" },
                patched: { podSpecPatch: { containers: [{ name: "command", image: "example.com/build:3" }] } },
            },
        });
        assert.deepStrictEqual(workerShape(queues, "scaledkite-worker"), {
            images: ["buildkite/agent:3.138.3", "docker:28.5.2-dind", "example.com/agent:2", "example.com/build:3"],
            serviceAccounts: ["default", "deployer", "scaledkite-worker"],
        });
    });
});

describe("podSecurityLevel", () => {
    const table: [string, Record<string, unknown>, string][] = [
        ["dind on (the default): the sidecar is privileged", {}, "privileged"],
        ["dind off on every queue: baseline", { dind: false }, "baseline"],
        ["one queue with dind is enough to need privileged", { dind: false, queues: { a: {}, b: { dind: true } } }, "privileged"],
    ];
    for (const [name, config, level] of table) it(name, () => assert.strictEqual(podSecurityLevel(settingsFor(config).queues), level));
});
