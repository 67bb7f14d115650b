/** The worker shape and Pod Security level a stack's queues allow. Pure; the API server's side is in test/integration/rbac.test.ts. */
import * as assert from "assert";
import {
    metadataNetworkPolicy,
    podSecurityLabels,
    podSecurityLevel,
    privilegedDindWarning,
    workerShape,
} from "../../k8s/workerPolicy";
import { rawConfig, settingsFor } from "../helpers/builders";
import { parseStackConfig } from "../../scheduler/config/config";

describe("workerShape", () => {
    it("lists every queue's images (dind's only where it runs, and any a pod spec patch names) and service accounts", () => {
        const { queues } = settingsFor({
            dind: "privileged",
            queues: {
                dynamic: {},
                plain: {
                    dind: false,
                    image: "example.com/agent:2",
                    serviceAccountName: "deployer",
                    env: { TEAM: "web" },
                    envFrom: [{ secretRef: { name: "deploy-env" } }, { configMapRef: { name: "settings" } }],
                },
                patched: {
                    podSpecPatch: {
                        containers: [
                            {
                                name: "command",
                                image: "example.com/build:3",
                                env: [
                                    { name: "NPM_TOKEN", valueFrom: { secretKeyRef: { name: "npm", key: "token" } } },
                                ],
                            },
                        ],
                        volumes: [
                            { name: "cache", nfs: { server: "cache.internal", path: "/" } },
                            { name: "certs", secret: { secretName: "ca-certs" } },
                        ],
                    },
                },
            },
        });
        assert.deepStrictEqual(workerShape(queues, "scaledkite-worker"), {
            images: ["buildkite/agent:3.138.3", "docker:28.5.2-dind", "example.com/agent:2", "example.com/build:3"],
            agentImages: ["buildkite/agent:3.138.3", "example.com/agent:2"],
            dindImages: ["docker:28.5.2-dind"],
            serviceAccounts: ["default", "deployer", "scaledkite-worker"],
            rootDind: true,
            secrets: [
                "ca-certs",
                "deploy-env",
                "npm",
                "scaledkite-env",
                "scaledkite-git-credentials",
                "scaledkite-git-ssh",
            ],
            agentEnv: ["TEAM=web"],
            volumeSources: [
                "configMap",
                "downwardAPI",
                "emptyDir",
                "ephemeral",
                "nfs",
                "persistentVolumeClaim",
                "projected",
                "secret",
            ],
            stepSecrets: false,
        });
    });

    const stepImages: [string, Record<string, unknown>, "any" | string[] | undefined, boolean][] = [
        ["no queue takes its pod from the job: only the stack's images", { stepShape: "none" }, undefined, false],
        [
            "a queue takes the step's image, any: any image",
            { stepShape: "none", queues: { a: { stepShape: "image" } } },
            "any",
            false,
        ],
        [
            "queues with allow-lists: their prefixes together",
            {
                stepShape: "plugin",
                queues: { a: { allowedImages: ["alpine:"] }, b: { allowedImages: ["ecr.example/"] } },
            },
            ["alpine:", "ecr.example/"],
            true,
        ],
        [
            "one queue without a list: any image",
            { stepShape: "plugin", queues: { a: { allowedImages: ["alpine:"] }, b: {} } },
            "any",
            true,
        ],
    ];
    for (const [name, raw, images, secrets] of stepImages)
        it(`step images: ${name}`, () => {
            const shape = workerShape(parseStackConfig(rawConfig(raw)).queues);
            assert.deepStrictEqual(shape.stepImages, images);
            assert.strictEqual(shape.stepSecrets, secrets, "the plugin may name the namespace's Secrets");
        });

    const rootDind: [string, Record<string, unknown>, boolean, string[]][] = [
        ["no dind (the default): no dind image, no root dockerd", {}, false, []],
        ["privileged dind runs dockerd as root", { dind: "privileged" }, true, ["docker:28.5.2-dind"]],
        [
            "rootless on every queue: no root dockerd, the stock rootless image",
            { dind: "rootless" },
            false,
            ["docker:28.5.2-dind-rootless"],
        ],
        [
            "one privileged queue among rootless ones is root",
            { dind: "rootless", queues: { a: {}, b: { dind: "privileged" } } },
            true,
            ["docker:28.5.2-dind", "docker:28.5.2-dind-rootless"],
        ],
        ["no dind anywhere: no dind image, no root dockerd", { dind: "none" }, false, []],
    ];
    for (const [name, config, root, dindImages] of rootDind) {
        it(name, () => {
            const shape = workerShape(settingsFor(config).queues);
            assert.strictEqual(shape.rootDind, root);
            assert.deepStrictEqual(
                shape.images.filter((i) => i.startsWith("docker:")),
                dindImages,
            );
        });
    }
});

describe("podSecurityLevel", () => {
    const table: [string, Record<string, unknown>, string][] = [
        ["no dind (the default): baseline", {}, "baseline"],
        ["privileged dind: the sidecar is privileged", { dind: "privileged" }, "privileged"],
        ["dind off on every queue: baseline", { dind: false }, "baseline"],
        [
            "one queue with dind is enough to need privileged",
            { dind: false, queues: { a: {}, b: { dind: true } } },
            "privileged",
        ],
        [
            "rootless dind too: the stock rootless image needs a privileged container",
            { dind: "rootless" },
            "privileged",
        ],
    ];
    for (const [name, config, level] of table)
        it(name, () => assert.strictEqual(podSecurityLevel(settingsFor(config).queues), level));
});

describe("podSecurityLabels", () => {
    it("enforce, warn and audit at the queues' level, each pinned to the tested version (not latest)", () => {
        assert.deepStrictEqual(podSecurityLabels(settingsFor({ queues: { a: {}, b: { dind: "rootless" } } }).queues), {
            "pod-security.kubernetes.io/enforce": "privileged",
            "pod-security.kubernetes.io/enforce-version": "v1.34",
            "pod-security.kubernetes.io/warn": "privileged",
            "pod-security.kubernetes.io/warn-version": "v1.34",
            "pod-security.kubernetes.io/audit": "privileged",
            "pod-security.kubernetes.io/audit-version": "v1.34",
        });
    });
});

describe("privilegedDindWarning: what pulumi preview says once about dockerd as root", () => {
    const table: [string, Record<string, unknown>, RegExp | undefined][] = [
        ["no dind (the default): nothing", {}, undefined],
        ["rootless everywhere: nothing", { dind: "rootless" }, undefined],
        [
            "a privileged queue on shared nodes: what it grants, that it is not pinned, the way out",
            { queues: { a: {}, b: { dind: "privileged" } } },
            /^queue b runs dind: privileged: dockerd is root in a privileged container, so every step on it can be root on its node \(the kubelet's credentials, the Secrets of every pod there, the node's IAM role\); b is not pinned to a node pool of its own .* Use dind: rootless/,
        ],
        [
            "privileged queues pinned to a tainted pool: no 'not pinned'",
            {
                dind: "privileged",
                nodeSelector: { pool: "builds" },
                tolerations: [{ key: "builds", operator: "Exists", effect: "NoSchedule" }],
                queues: { a: {}, b: {} },
            },
            /^queues a, b run dind: privileged: .* can be root on its node \([^;]*\)\. Use dind: rootless/,
        ],
    ];
    for (const [name, config, message] of table) {
        it(name, () => {
            const warning = privilegedDindWarning(settingsFor(config).queues);
            if (message === undefined) assert.strictEqual(warning, undefined);
            else assert.match(warning ?? "", message);
        });
    }
});

describe("metadataNetworkPolicy", () => {
    it("selects the worker pods and lets them reach everything but the instance metadata service", () => {
        const p = metadataNetworkPolicy("buildkite") as any;
        assert.deepStrictEqual(p.spec.podSelector, {
            matchLabels: { "app.kubernetes.io/component": "buildkite-worker" },
        });
        assert.deepStrictEqual(p.spec.policyTypes, ["Egress"]);
        assert.deepStrictEqual(p.spec.egress[0].to.map((t: any) => t.ipBlock.except).flat(), [
            "169.254.169.254/32",
            "fd00:ec2::254/128",
        ]);
    });
});
