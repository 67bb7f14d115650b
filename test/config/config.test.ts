import * as assert from "assert";
import { parseStackConfig } from "../../scheduler/config/config";
import { isConfigError } from "../../scheduler/core/errors";
import { rawConfig } from "../helpers/builders";
import { MAX_JOB_PREFIX_LENGTH, WORKER_DEFAULTS } from "../../scheduler/config/workers";

function problems(overrides: Record<string, unknown>): string[] {
    try {
        parseStackConfig(rawConfig(overrides));
    } catch (e) {
        if (isConfigError(e)) return e.problems;
        throw e;
    }
    return [];
}

const ECR = "111122223333.dkr.ecr.us-east-1.amazonaws.com";
const SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:buildkite/agent-token-AbC123";

describe("stack configuration", () => {
    it("applies the documented defaults", () => {
        const c = parseStackConfig(rawConfig());
        assert.strictEqual(c.namespace, "buildkite");
        assert.strictEqual(c.jobPrefix, "buildkite-agent-");
        assert.deepStrictEqual(Object.keys(c.queues), ["dynamic"]);
        assert.deepStrictEqual(c.queues.dynamic, WORKER_DEFAULTS);
        assert.match(c.defaults.image, /^buildkite\/agent:\d+\.\d+\.\d+$/, "a pinned tag of the stock image");
        assert.deepStrictEqual(c.secrets, {
            env: false,
            gitCredentials: false,
            gitSsh: false,
            hooks: false,
            ecr: false,
        });
        assert.strictEqual(c.sweep.keepQueuesConnected, true, "queues stay Connected in Buildkite by default");
        assert.strictEqual(
            parseStackConfig(rawConfig({ keepQueuesConnected: "false" })).sweep.keepQueuesConnected,
            false,
        );
        assert.deepStrictEqual(c.lambda, {
            memoryMb: 512,
            timeoutSeconds: 30,
            logRetentionDays: 14,
            retryAttempts: 185,
            maxEventAgeSeconds: 86400,
            schedulerConcurrency: undefined,
            sweepConcurrency: 1,
            network: undefined,
        });
    });

    it("reads values given as strings (pulumi config) and as typed YAML alike", () => {
        const fromStrings = parseStackConfig(
            rawConfig({
                dind: "false",
                activeDeadlineSeconds: "600",
                queues: '{"a":{"dind":true}}',
                nodeSelector: '{"pool":"ci"}',
            }),
        );
        const fromYaml = parseStackConfig(
            rawConfig({
                dind: false,
                activeDeadlineSeconds: 600,
                queues: { a: { dind: true } },
                nodeSelector: { pool: "ci" },
            }),
        );
        assert.deepStrictEqual(fromStrings, fromYaml);
        assert.strictEqual(fromYaml.queues.a.dind, "privileged", "the queue overrides the default (true: privileged)");
        assert.strictEqual(fromYaml.defaults.dind, "none", "false: none");
        assert.strictEqual(fromYaml.queues.a.activeDeadlineSeconds, 600, "the queue inherits the stack-wide value");
        assert.deepStrictEqual(fromYaml.queues.a.nodeSelector, { pool: "ci" });
    });

    const dindModes: [string, Record<string, unknown>, { dind: string; dindImage: string }][] = [
        [
            "the default: none (no privileged container; README, Security model)",
            {},
            { dind: "none", dindImage: "docker:28.5.2-dind" },
        ],
        [
            "privileged: the stock dind image",
            { dind: "privileged" },
            { dind: "privileged", dindImage: "docker:28.5.2-dind" },
        ],
        [
            "rootless: the stock rootless image at the same version",
            { dind: "rootless" },
            { dind: "rootless", dindImage: "docker:28.5.2-dind-rootless" },
        ],
        [
            "rootless on one queue only: that queue's image follows its mode",
            { queues: { a: { dind: "rootless" } } },
            { dind: "rootless", dindImage: "docker:28.5.2-dind-rootless" },
        ],
        [
            "an image the stack sets wins over the mode's default",
            { dind: "rootless", dindImage: "example.com/dind:1" },
            { dind: "rootless", dindImage: "example.com/dind:1" },
        ],
        [
            "a queue that switches mode gets its mode's stock image, not the stack's image for the other mode",
            { dindImage: "example.com/dind:1", queues: { a: { dind: "rootless" } } },
            { dind: "rootless", dindImage: "docker:28.5.2-dind-rootless" },
        ],
        [
            "an image the queue sets wins",
            { queues: { a: { dind: "rootless", dindImage: "example.com/dind:2" } } },
            { dind: "rootless", dindImage: "example.com/dind:2" },
        ],
        ["none", { dind: "none" }, { dind: "none", dindImage: "docker:28.5.2-dind" }],
        [
            "a mode given as a string from pulumi config",
            { queues: '{"a":{"dind":"rootless"}}' },
            { dind: "rootless", dindImage: "docker:28.5.2-dind-rootless" },
        ],
    ];
    for (const [name, config, want] of dindModes) {
        it(`dind mode: ${name}`, () => {
            const queues = parseStackConfig(rawConfig({ queues: { a: {} }, ...config })).queues;
            assert.deepStrictEqual({ dind: queues.a.dind, dindImage: queues.a.dindImage }, want);
        });
    }

    describe("one merge rule for a queue's settings: maps merge, lists add, the rest replaces", () => {
        const stackWide = {
            nodeSelector: { "kubernetes.io/os": "linux" },
            tolerations: [{ key: "buildkite", operator: "Exists", effect: "NoSchedule" }],
            agentTags: ["os=linux"],
            resources: { command: { requests: { cpu: "2" } } },
            activeDeadlineSeconds: 3600,
        };
        const queue = (q: Record<string, unknown>) =>
            parseStackConfig(rawConfig({ ...stackWide, fargateSubnetIds: ["subnet-0abc"], queues: { q } })).queues.q;
        it("a gpu queue's toleration adds to the stack's, and its node selector merges", () => {
            const gpu = queue({
                nodeSelector: { pool: "gpu" },
                tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
            });
            assert.deepStrictEqual(gpu.nodeSelector, { "kubernetes.io/os": "linux", pool: "gpu" });
            assert.deepStrictEqual(
                gpu.tolerations.map((t) => t.key),
                ["buildkite", "nvidia.com/gpu"],
                "the stack's toleration is kept",
            );
        });
        it("resources merge per container over the stack's, not over the built-in defaults", () => {
            const q = queue({ resources: { dind: { requests: { cpu: "1" } } } });
            assert.deepStrictEqual(q.resources.command, { requests: { cpu: "2" } }, "the stack's command resources");
            assert.deepStrictEqual(q.resources.dind, { requests: { cpu: "1" } });
            assert.deepStrictEqual(q.resources.agent, WORKER_DEFAULTS.resources.agent);
        });
        it("agent tags add, without repeats; a number replaces", () => {
            const q = queue({ agentTags: ["os=linux", "gpu=true"], activeDeadlineSeconds: 600 });
            assert.deepStrictEqual(q.agentTags, ["os=linux", "gpu=true"]);
            assert.strictEqual(q.activeDeadlineSeconds, 600);
        });
        it("a Fargate queue takes no stack-wide node selector or tolerations (the README's example works as written)", () => {
            const small = queue({ fargate: true, dind: "none" });
            assert.deepStrictEqual([small.nodeSelector, small.tolerations], [{}, []]);
        });
    });

    it("suggests the nearest key for a mistyped one", () => {
        assert.throws(
            () => parseStackConfig(rawConfig({ sweepIntervall: 1 })),
            /scaledkite:sweepIntervall is not a Scaledkite setting: did you mean scaledkite:sweepInterval\?/,
        );
        assert.throws(
            () => parseStackConfig(rawConfig({ queues: { a: { nodeSelecter: {} } } })),
            /queues.a.nodeSelecter is not a queue setting: did you mean nodeSelector\?/,
        );
        assert.throws(
            () => parseStackConfig(rawConfig({ queues: { a: { flavour: "x" } } })),
            /queues.a.flavour is not a queue setting; queue settings are: image, /,
            "nothing near: the list",
        );
    });

    it("merges a queue's resources over the defaults per container", () => {
        const c = parseStackConfig(
            rawConfig({ queues: { big: { resources: { agent: { requests: { cpu: "4" } } } } } }),
        );
        assert.deepStrictEqual(c.queues.big.resources.agent, { requests: { cpu: "4" } });
        assert.deepStrictEqual(c.queues.big.resources.dind, WORKER_DEFAULTS.resources.dind);
    });

    it("notes which optional secrets are set, without their values", () => {
        const c = parseStackConfig(
            rawConfig({
                env: "<secret>",
                gitCredentials: "<secret>",
                gitSshKey: "<secret>",
                gitKnownHosts: "github.com ssh-ed25519 AAAA",
                hooks: { environment: "echo hi" },
            }),
        );
        assert.deepStrictEqual(c.secrets, { env: true, gitCredentials: true, gitSsh: true, hooks: true, ecr: false });
        assert.deepStrictEqual(c.hooks, { environment: "echo hi" });
    });

    it("accepts a job prefix of exactly the longest length", () => {
        const prefix = "a".repeat(MAX_JOB_PREFIX_LENGTH);
        assert.strictEqual(parseStackConfig(rawConfig({ jobPrefix: prefix })).jobPrefix, prefix);
    });

    const bad: [string, Record<string, unknown>, RegExp][] = [
        [
            "missing cluster",
            { cluster: undefined },
            /scaledkite:cluster is required.*pulumi config set scaledkite:cluster/,
        ],
        [
            "cluster with spaces",
            { cluster: "my cluster" },
            /scaledkite:cluster "my cluster" is not an EKS cluster name/,
        ],
        ["missing event bus", { eventBusName: "" }, /scaledkite:eventBusName is required/],
        [
            "missing agent token",
            { agentToken: undefined },
            /scaledkite:agentToken is required.*--secret.*or its AWS Secrets Manager secret/,
        ],
        ["role ARN that is not one", { roleArn: "my-role" }, /scaledkite:roleArn "my-role" is not an IAM role ARN/],
        [
            "namespace with capitals",
            { namespace: "BuildKite" },
            /scaledkite:namespace "BuildKite" is not a DNS-1123 label/,
        ],
        [
            "job prefix too long",
            { jobPrefix: "a".repeat(MAX_JOB_PREFIX_LENGTH + 1) },
            /a Job name would pass 63; use at most 27/,
        ],
        ["job prefix with underscore", { jobPrefix: "build_kite-" }, /would not make a DNS-1123 Job name/],
        ["job prefix starting with a dash", { jobPrefix: "-bk-" }, /would not make a DNS-1123 Job name/],
        ["queues not JSON", { queues: "{dynamic" }, /scaledkite:queues is not valid JSON/],
        ["queues a list", { queues: ["dynamic"] }, /scaledkite:queues must be a map/],
        ["no queues", { queues: {} }, /serves no queue/],
        ["queue with a bad name", { queues: { "bad queue": {} } }, /queues.bad queue is not a usable queue name/],
        [
            "queue with an unknown key",
            { queues: { dynamic: { imagee: "x" } } },
            /scaledkite:queues.dynamic.imagee is not a queue setting/,
        ],
        ["queue entry not an object", { queues: { dynamic: "big" } }, /queues.dynamic must be an object/],
        [
            "dind not a mode",
            { dind: "yes" },
            /scaledkite:dind must be privileged, rootless or none \(true and false mean privileged and none\), got "yes"/,
        ],
        ["deadline too short", { activeDeadlineSeconds: 5 }, /activeDeadlineSeconds must be a whole number from 60/],
        ["ttl negative", { ttlSecondsAfterFinished: -1 }, /ttlSecondsAfterFinished must be a whole number/],
        ["backoff a fraction", { backoffLimit: 1.5 }, /backoffLimit must be a whole number/],
        [
            "termination grace too short to cancel a job",
            { terminationGracePeriodSeconds: 5 },
            /terminationGracePeriodSeconds must be a whole number from 10 to 3600, got 5/,
        ],
        [
            "resources for an unknown container",
            { resources: { sidecar: {} } },
            /resources.sidecar is not a container of the worker/,
        ],
        [
            "resources with a bad quantity",
            { resources: { agent: { requests: { cpu: "lots" } } } },
            /"lots", not a Kubernetes quantity/,
        ],
        [
            "resources with an unknown part",
            { resources: { agent: { minimum: {} } } },
            /resources.agent.minimum is not a resources key/,
        ],
        ["node selector a list", { nodeSelector: ["a"] }, /nodeSelector must be a map/],
        ["node selector bad value", { nodeSelector: { pool: "a b" } }, /not a valid label value/],
        ["tolerations an object", { tolerations: { key: "a" } }, /tolerations must be a list/],
        [
            "toleration with a bad operator",
            { tolerations: [{ key: "a", operator: "Maybe" }] },
            /tolerations\[0\].operator must be Exists or Equal/,
        ],
        ["toleration with an unknown field", { tolerations: [{ keys: "a" }] }, /has unknown field keys/],
        ["agent tag that sets the queue", { agentTags: ["queue=other"] }, /queue= is set by the scheduler/],
        ["label with a bad key", { labels: { "bad key": "x" } }, /labels.bad key is not a valid Kubernetes label key/],
        [
            "queue env that sets the agent's hooks path",
            { queues: { dynamic: { env: { BUILDKITE_HOOKS_PATH: "/workspace/hooks" } } } },
            /env.BUILDKITE_HOOKS_PATH is set by Scaledkite for the agent .*: remove it from env/,
        ],
        [
            "queue env with a bad name",
            { queues: { dynamic: { env: { "1X": "a" } } } },
            /env.1X is not a valid environment variable name/,
        ],
        ["image with spaces", { image: "buildkite agent" }, /scaledkite:image must be an image reference/],
        ["lambda memory too small", { lambdaMemoryMb: 64 }, /lambdaMemoryMb must be a whole number from 128/],
        ["log retention not offered by CloudWatch", { logRetentionDays: 10 }, /logRetentionDays must be one of/],
        ["unknown key (a typo)", { namepsace: "x" }, /scaledkite:namepsace is not a Scaledkite setting/],
        [
            "dind on a Fargate queue",
            { fargateSubnetIds: ["subnet-0abc"], dind: "privileged", queues: { small: { fargate: true } } },
            /queues.small.dind must be none on a Fargate queue: Fargate allows no privileged containers/,
        ],
        [
            "rootless dind on a Fargate queue",
            { fargateSubnetIds: ["subnet-0abc"], queues: { small: { fargate: true, dind: "rootless" } } },
            /queues.small.dind must be none on a Fargate queue: .*rootless too.*dind' none\)/,
        ],
        [
            "a node selector on a Fargate queue",
            {
                fargateSubnetIds: ["subnet-0abc"],
                queues: { small: { fargate: true, dind: false, nodeSelector: { a: "b" } } },
            },
            /queues.small.fargate cannot be combined with nodeSelector/,
        ],
        [
            "a Fargate queue without subnets",
            { queues: { small: { fargate: true, dind: false } } },
            /fargateSubnetIds is required for Fargate queue small/,
        ],
        ["a subnet id that is not one", { fargateSubnetIds: ["vpc-1"] }, /"vpc-1", not a subnet id/],
        [
            "an SSH key without known hosts",
            { gitSshKey: "<secret>" },
            /gitKnownHosts is required with gitSshKey.*ssh-keyscan/,
        ],
        [
            "a hook with a bad file name",
            { hooks: { "../evil": "x" } },
            /hooks.\.\.\/evil is not an agent hook file name/,
        ],
        ["envFrom that is not a list", { envFrom: { secretRef: { name: "x" } } }, /envFrom must be a list/],
        [
            "envFrom with an unknown source",
            { queues: { dynamic: { envFrom: [{ secret: "x" }] } } },
            /queues.dynamic.envFrom\[0\] must be \{"secretRef"/,
        ],
        [
            "affinity with an unknown field",
            { affinity: { nodeAfinity: {} } },
            /affinity.nodeAfinity is not a field of affinity/,
        ],
        [
            "a service account name with capitals",
            { queues: { dynamic: { serviceAccountName: "Builder" } } },
            /serviceAccountName "Builder" is not a Kubernetes name/,
        ],
        [
            "a CPU cap that is not a quantity",
            { maxCpu: "lots" },
            /scaledkite:maxCpu "lots" is not a Kubernetes quantity/,
        ],
        ["a job cap of zero", { maxConcurrentJobs: 0 }, /maxConcurrentJobs must be a whole number from 1/],
        [
            "a CPU cap with a queue that requests no CPU",
            { maxCpu: "8", queues: { dynamic: { resources: { agent: { requests: { memory: "1Gi" } } } } } },
            /queues.dynamic.resources.agent requests no cpu: with scaledkite:maxCpu set/,
        ],
        [
            "an alarm topic that is not an SNS ARN",
            { alarmTopicArn: "ci-alerts" },
            /alarmTopicArn "ci-alerts" is not an SNS topic ARN/,
        ],
        ["a sweep interval over an hour", { sweepInterval: 90 }, /sweepInterval must be a whole number from 0 to 60/],
        [
            "more queues than an EventBridge pattern holds",
            { queues: Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`team-${i}-builds`, {}])) },
            /scaledkite:queues 120 queues make an EventBridge rule pattern of \d+ characters, over EventBridge's default quota of 2048: split the queues over two or more stacks/,
        ],
        [
            "keepQueuesConnected not a boolean",
            { keepQueuesConnected: "sometimes" },
            /keepQueuesConnected must be true or false/,
        ],
        [
            "a Stacks API endpoint over plain http",
            { agentEndpoint: "http://agent.example.com/v3" },
            /agentEndpoint "http:\/\/agent.example.com\/v3" must be an https URL/,
        ],
        [
            "a pending timeout under a minute",
            { podPendingTimeout: 5 },
            /podPendingTimeout must be a whole number from 60/,
        ],
        ["a stack key with spaces", { stackKey: "my stack" }, /stackKey "my stack" is not a usable stack key/],
        [
            "an agent token secret ARN that is not one",
            { agentToken: undefined, agentTokenSecretArn: "buildkite/agent-token" },
            /agentTokenSecretArn "buildkite\/agent-token" is not a Secrets Manager secret ARN.*describe-secret/,
        ],
        [
            "both an agent token and its secret ARN",
            { agentTokenSecretArn: SECRET_ARN },
            /agentToken and scaledkite:agentTokenSecretArn are both set: keep one/,
        ],
        [
            "a secret JSON key without the ARN",
            { agentTokenSecretKey: "token" },
            /agentTokenSecretKey is set without scaledkite:agentTokenSecretArn/,
        ],
        [
            "a token sync interval without the ARN",
            { tokenSyncInterval: 15 },
            /tokenSyncInterval is set without scaledkite:agentTokenSecretArn/,
        ],
        [
            "a token sync interval over an hour",
            { agentToken: undefined, agentTokenSecretArn: SECRET_ARN, tokenSyncInterval: 90 },
            /tokenSyncInterval must be a whole number from 1 to 60/,
        ],
        [
            "an ECR registry that is not an ECR host",
            { ecrRegistries: ["ghcr.io"] },
            /ecrRegistries\[0\].registry "ghcr.io" is not an ECR registry host/,
        ],
        [
            "ECR registries that are not a list",
            { ecrRegistries: { a: 1 } },
            /ecrRegistries must be a non-empty list of registries, e.g./,
        ],
        [
            "an ECR registry listed twice",
            { ecrRegistries: [ECR, { registry: ECR, push: true }] },
            /ecrRegistries\[1\].registry .* is listed twice/,
        ],
        [
            "an ECR registry with an unknown field",
            { ecrRegistries: [{ registry: ECR, pull: true }] },
            /ecrRegistries\[0\].pull is not a registry setting/,
        ],
        [
            "an ECR repository pattern with capitals",
            { ecrRegistries: [{ registry: ECR, repositories: ["CI/*"] }] },
            /has "CI\/\*", not a repository name/,
        ],
        [
            "push that is not a boolean",
            { ecrRegistries: [{ registry: ECR, push: "yes" }] },
            /ecrRegistries\[0\].push must be true or false/,
        ],
        [
            "an unknown worker identity",
            { ecrRegistries: [ECR], workerIdentity: "keys" },
            /workerIdentity must be podIdentity .* or irsa/,
        ],
        [
            "a worker identity without registries",
            { workerIdentity: "irsa" },
            /workerIdentity is set without scaledkite:ecrRegistries/,
        ],
        [
            "Pod Identity with a Fargate queue",
            {
                ecrRegistries: [ECR],
                fargateSubnetIds: ["subnet-0abc"],
                queues: { small: { fargate: true, dind: false } },
            },
            /queues.small.fargate cannot use EKS Pod Identity for ECR.*workerIdentity irsa/,
        ],
        ["a pod spec patch that is not an object", { podSpecPatch: "[1]" }, /podSpecPatch must be an object/],
        [
            "a Lambda timeout shorter than one Kubernetes call",
            { lambdaTimeoutSeconds: 10 },
            /lambdaTimeoutSeconds must be a whole number from 12 to 900/,
        ],
        [
            "Lambda subnets without security groups",
            { lambdaSubnetIds: ["subnet-0abc1234"] },
            /lambdaSecurityGroupIds is needed too: a Lambda in a VPC needs both subnets and security groups/,
        ],
        [
            "a Lambda security group that is not one",
            { lambdaSubnetIds: ["subnet-0abc1234"], lambdaSecurityGroupIds: ["default"] },
            /lambdaSecurityGroupIds has "default", not a security group id/,
        ],
        [
            "an agent tag with a NUL byte",
            { agentTags: ["os=linux\u0000"] },
            /agentTags has "os=linux\\u0000": tags are "key=value" \(no spaces or control characters\)/,
        ],
        [
            "an agent image too old to read its token from a file",
            { image: "buildkite/agent:3.120.0" },
            /scaledkite:image "buildkite\/agent:3.120.0" is buildkite-agent 3.120.0, older than 3.133.0, which cannot read its registration token from a file .* use buildkite\/agent:3.138.3 or newer/,
        ],
        [
            "a queue's old agent image, with a v and a distribution",
            { queues: { a: { image: "public.ecr.aws/buildkite/agent:v3.99.1-ubuntu-22.04" } } },
            /queues.a.image .* is buildkite-agent 3.99.1, older than 3.133.0/,
        ],
        [
            "a pod spec patch that shares the process namespace",
            { podSpecPatch: { shareProcessNamespace: true } },
            /scaledkite:podSpecPatch sets shareProcessNamespace: true, which no worker may have: shareProcessNamespace is not allowed: it shows the agent's processes, and so its token, to the build .*; remove it/,
        ],
        [
            "a queue's pod spec patch that picks a node",
            { queues: { a: { podSpecPatch: { nodeName: "ip-10-0-0-1" } } } },
            /queues.a.podSpecPatch sets nodeName, which no worker may have/,
        ],
        [
            "a pod spec patch that adds capabilities",
            {
                podSpecPatch: {
                    containers: [{ name: "command", securityContext: { capabilities: { add: ["SYS_ADMIN"] } } }],
                },
            },
            /sets containers\[command\].securityContext.capabilities.add, which no worker may have: added capabilities are not allowed/,
        ],
        [
            "a pod spec patch that mounts the agent token in the build",
            { podSpecPatch: { volumes: [{ name: "t", secret: { secretName: "scaledkite-agent-token" } }] } },
            /sets volumes\[t\], which no worker may have: the agent token Secret .* may only be mounted in the agent container/,
        ],
        [
            "a pod spec patch that changes the agent's command",
            { podSpecPatch: { containers: [{ name: "agent", command: ["sh"] }] } },
            /sets containers\[agent\].command, which no worker may have: the agent container is Scaledkite's/,
        ],
        [
            "a pod spec patch with an unconfined seccomp profile",
            { podSpecPatch: { securityContext: { seccompProfile: { type: "Unconfined" } } } },
            /seccomp and AppArmor profiles may not be Unconfined/,
        ],
        [
            "a pod spec patch with a privileged container",
            {
                podSpecPatch: {
                    initContainers: [{ name: "setup", image: "x", securityContext: { privileged: true } }],
                },
            },
            /sets initContainers\[setup\].securityContext.privileged, which no worker may have: only the dind sidecar/,
        ],
        [
            "a pod spec patch with a host path",
            { podSpecPatch: { volumes: [{ name: "root", hostPath: { path: "/" } }] } },
            /sets volumes\[root\].hostPath, which no worker may have: hostPath volumes are not allowed/,
        ],
        [
            "an agent tag holding a comma",
            { agentTags: ["os=linux,arch=arm64"] },
            /agentTags has "os=linux,arch=arm64": a tag cannot hold a ","/,
        ],
        [
            "a sweep concurrency of zero (it would never run)",
            { sweepConcurrency: 0 },
            /sweepConcurrency must be a whole number from 1 to 10/,
        ],
    ];
    for (const [name, overrides, message] of bad) {
        it(`rejects ${name}`, () => {
            const p = problems(overrides);
            assert.ok(
                p.some((m) => message.test(m)),
                `expected ${message} in ${JSON.stringify(p)}`,
            );
            for (const m of p) assert.ok(!m.includes("\n"), "one line each");
        });
    }

    it("takes the agent token from Secrets Manager instead of config", () => {
        const c = parseStackConfig(
            rawConfig({ agentToken: undefined, agentTokenSecretArn: SECRET_ARN, agentTokenSecretKey: "token" }),
        );
        assert.deepStrictEqual(c.agentToken, {
            kind: "secretsManager",
            arn: SECRET_ARN,
            jsonKey: "token",
            intervalMinutes: 5,
        });
        assert.deepStrictEqual(parseStackConfig(rawConfig()).agentToken, { kind: "config" });
    });

    it("reads ECR registries given as hosts or as objects", () => {
        const c = parseStackConfig(
            rawConfig({
                ecrRegistries: [
                    ECR,
                    {
                        registry: "444455556666.dkr.ecr.cn-north-1.amazonaws.com.cn",
                        push: true,
                        repositories: ["ci/*"],
                    },
                ],
                workerIdentity: "irsa",
            }),
        );
        assert.deepStrictEqual(c.ecr, {
            identity: "irsa",
            registries: [
                {
                    registry: ECR,
                    partition: "aws",
                    account: "111122223333",
                    region: "us-east-1",
                    push: false,
                    repositories: ["*"],
                },
                {
                    registry: "444455556666.dkr.ecr.cn-north-1.amazonaws.com.cn",
                    partition: "aws-cn",
                    account: "444455556666",
                    region: "cn-north-1",
                    push: true,
                    repositories: ["ci/*"],
                },
            ],
        });
        assert.strictEqual(c.secrets.ecr, true);
        assert.strictEqual(
            parseStackConfig(
                rawConfig({
                    ecrRegistries: [ECR],
                    fargateSubnetIds: ["subnet-0abc"],
                    workerIdentity: "irsa",
                    queues: { small: { fargate: true, dind: false } },
                }),
            ).ecr!.identity,
            "irsa",
        );
    });

    it("reports every problem at once", () => {
        assert.strictEqual(problems({ cluster: undefined, namespace: "X", dind: "maybe" }).length, 3);
    });
});
