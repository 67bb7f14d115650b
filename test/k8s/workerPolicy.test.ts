/** The worker shape and Pod Security level a stack's queues allow. Pure; the API server's side is in test/integration/rbac.test.ts. */
import * as assert from "assert";
import { podSecurityLevel, workerShape } from "../../k8s/workerPolicy";
import { settingsFor } from "../helpers/builders";

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
            rootDind: true,
        });
    });

    const rootDind: [string, Record<string, unknown>, boolean, string[]][] = [
        ["privileged dind (the default) runs dockerd as root", {}, true, ["docker:28.5.2-dind"]],
        ["rootless on every queue: no root dockerd, the stock rootless image", { dind: "rootless" }, false, ["docker:28.5.2-dind-rootless"]],
        ["one privileged queue among rootless ones is root", { dind: "rootless", queues: { a: {}, b: { dind: "privileged" } } }, true, ["docker:28.5.2-dind", "docker:28.5.2-dind-rootless"]],
        ["no dind anywhere: no dind image, no root dockerd", { dind: "none" }, false, []],
    ];
    for (const [name, config, root, dindImages] of rootDind) {
        it(name, () => {
            const shape = workerShape(settingsFor(config).queues);
            assert.strictEqual(shape.rootDind, root);
            assert.deepStrictEqual(shape.images.filter((i) => i.startsWith("docker:")), dindImages);
        });
    }
});

describe("podSecurityLevel", () => {
    const table: [string, Record<string, unknown>, string][] = [
        ["dind on (the default): the sidecar is privileged", {}, "privileged"],
        ["dind off on every queue: baseline", { dind: false }, "baseline"],
        ["one queue with dind is enough to need privileged", { dind: false, queues: { a: {}, b: { dind: true } } }, "privileged"],
        ["rootless dind too: the stock rootless image needs a privileged container", { dind: "rootless" }, "privileged"],
    ];
    for (const [name, config, level] of table) it(name, () => assert.strictEqual(podSecurityLevel(settingsFor(config).queues), level));
});
