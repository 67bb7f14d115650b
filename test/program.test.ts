/**
 * The Pulumi program under Pulumi's mocks: what one `pulumi up` declares.
 */
import * as assert from "assert";
import { eventPattern } from "../scheduler/core/queue";
import { baseConfig, lambdaArchive, lambdaCode, runProgram, type ProgramRun } from "./helpers/pulumiProgram";

function statements(policyJson: string): any[] {
    return JSON.parse(policyJson).Statement;
}

describe("Pulumi program", function () {
    this.timeout(120_000);
    let run: ProgramRun;
    before(async () => {
        run = await runProgram({
            ...baseConfig(),
            "scaledkite:queues": JSON.stringify({ dynamic: {}, "docker-free": { dind: false } }),
            "scaledkite:env": JSON.stringify({ GITHUB_TOKEN: "ghp_ENV-SECRET-VALUE" }),
            "scaledkite:gitCredentials": "https://x:GIT-SECRET-VALUE@github.com",
            "scaledkite:gitSshKey":
                "-----BEGIN OPENSSH PRIVATE KEY-----\nSSH-SECRET-VALUE\n-----END OPENSSH PRIVATE KEY-----",
            "scaledkite:gitKnownHosts": "github.com ssh-ed25519 AAAAC3Nza",
            "scaledkite:hooks": JSON.stringify({ environment: "#!/bin/sh\nexport FOO=1\n" }),
        });
    });

    it("creates the namespace, the Secrets and least-privilege RBAC in the cluster", () => {
        assert.strictEqual(run.one("kubernetes:core/v1:Namespace").inputs.metadata.name, "buildkite");
        const secrets = run
            .ofType("kubernetes:core/v1:Secret")
            .map((s) => s.inputs.metadata.name)
            .sort();
        assert.deepStrictEqual(secrets, [
            "scaledkite-agent-token",
            "scaledkite-env",
            "scaledkite-git-credentials",
            "scaledkite-git-ssh",
        ]);
        const hooks = run.one("kubernetes:core/v1:ConfigMap").inputs;
        assert.strictEqual(hooks.metadata.name, "scaledkite-hooks");
        assert.strictEqual(hooks.data.environment, "#!/bin/sh\nexport FOO=1\n");
        const role = run.named("kubernetes:rbac.authorization.k8s.io/v1:Role", "workers-scheduler").inputs;
        // Its queues take their pod from the job (the default with the sweep on): the scheduler reads
        // jobs through the Stacks API with the agent token, and a step's PodTemplate; nothing else.
        assert.deepStrictEqual(role.rules, [
            { apiGroups: ["batch"], resources: ["jobs"], verbs: ["create", "get", "list", "delete"] },
            { apiGroups: [""], resources: ["secrets"], verbs: ["get"], resourceNames: ["scaledkite-agent-token"] },
            { apiGroups: [""], resources: ["podtemplates"], verbs: ["get"] },
        ]);
        const binding = run.named("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "workers-scheduler").inputs;
        assert.deepStrictEqual(binding.subjects, [
            { apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "scaledkite:scheduler" },
        ]);
        assert.strictEqual(binding.metadata.namespace, "buildkite");
    });

    it("maps the Lambda role to the scheduler group with an EKS access entry", () => {
        const entry = run.named("aws:eks/accessEntry:AccessEntry", "scheduler-access").inputs;
        assert.strictEqual(entry.clusterName, "ci-cluster");
        assert.deepStrictEqual(entry.kubernetesGroups, ["scaledkite:scheduler"]);
        assert.match(entry.principalArn, /scheduler-role/);
    });

    it("listens on the partner bus for this account's Job Scheduled events of the served queues only", () => {
        const rule = run.named("aws:cloudwatch/eventRule:EventRule", "scheduler-job-scheduled").inputs;
        assert.strictEqual(rule.eventBusName, "aws.partner/buildkite.com/my-org/0106-187c-12cd4fe");
        assert.deepStrictEqual(JSON.parse(rule.eventPattern), {
            account: ["123456789012"],
            "detail-type": ["Job Scheduled"],
            detail: { job: { agent_query_rules: ["queue=docker-free", "queue=dynamic"] } },
        });
    });

    it("also listens for Job Finished events of jobs that never started, to remove their workers", () => {
        const rule = run.named("aws:cloudwatch/eventRule:EventRule", "scheduler-job-cancelled").inputs;
        assert.deepStrictEqual(JSON.parse(rule.eventPattern), {
            account: ["123456789012"],
            "detail-type": ["Job Finished"],
            detail: { job: { agent_query_rules: ["queue=docker-free", "queue=dynamic"], started_at: [null] } },
        });
    });

    it("serving the default queue widens the pattern to every Job Scheduled event", () => {
        assert.deepStrictEqual(eventPattern("1", ["default", "x"]), {
            account: ["1"],
            "detail-type": ["Job Scheduled"],
        });
    });

    it("delivers into an SQS queue whose records are retried for a day, then the DLQ, which redrives back to it", () => {
        const targets = run
            .ofType("aws:cloudwatch/eventTarget:EventTarget")
            .filter((t) => t.inputs.eventBusName !== undefined);
        assert.strictEqual(targets.length, 2, "one per partner-bus rule");
        for (const { inputs: target } of targets) {
            assert.match(target.arn, /scheduler-events/, "into the event queue, not straight to Lambda");
            assert.deepStrictEqual(target.retryPolicy, { maximumRetryAttempts: 185, maximumEventAgeInSeconds: 86400 });
            assert.match(target.deadLetterConfig.arn, /scheduler-dlq/);
            assert.strictEqual(target.eventBusName, "aws.partner/buildkite.com/my-org/0106-187c-12cd4fe");
        }
        assert.strictEqual(
            run.ofType("aws:lambda/permission:Permission").filter((p) => p.name.startsWith("scheduler")).length,
            0,
            "EventBridge no longer invokes the Lambda",
        );
        const queue = run.named("aws:sqs/queue:Queue", "scheduler-events").inputs;
        const redrive = JSON.parse(queue.redrivePolicy);
        assert.match(redrive.deadLetterTargetArn, /scheduler-dlq/);
        assert.ok(queue.visibilityTimeoutSeconds >= 6 * 30, "above the function's timeout (AWS: six times it)");
        assert.ok(redrive.maxReceiveCount * queue.visibilityTimeoutSeconds >= 24 * 3600, "at least a day of retries");
        assert.ok(queue.messageRetentionSeconds > redrive.maxReceiveCount * queue.visibilityTimeoutSeconds);
        const allow = JSON.parse(run.one("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy").inputs.redriveAllowPolicy);
        assert.strictEqual(allow.redrivePermission, "byQueue");
        assert.match(allow.sourceQueueArns[0], /scheduler-events/, "the DLQ may be redriven to the event queue");
        for (const p of run.ofType("aws:sqs/queuePolicy:QueuePolicy")) {
            const [s] = statements(p.inputs.policy);
            assert.deepStrictEqual(s.Principal, { Service: "events.amazonaws.com" });
            assert.strictEqual(s.Condition.ArnEquals["aws:SourceArn"].length, 2, "only the two rules may send");
        }
        const mapping = run.one("aws:lambda/eventSourceMapping:EventSourceMapping").inputs;
        assert.match(mapping.eventSourceArn, /scheduler-events/);
        assert.deepStrictEqual(
            mapping.functionResponseTypes,
            ["ReportBatchItemFailures"],
            "only a batch's failed records are retried",
        );
        assert.strictEqual(mapping.maximumBatchingWindowInSeconds, 0, "no waiting to fill a batch");
        assert.deepStrictEqual(mapping.scalingConfig, { maximumConcurrency: 100 });
        const asyncConfigs = run.ofType("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig");
        assert.deepStrictEqual(
            asyncConfigs.map((c) => [c.name, c.inputs.maximumRetryAttempts]),
            [["sweep-async", 0]],
            "the scheduler takes events from SQS (no async retries to set); a failed sweep waits for the next one instead of two retries",
        );
        assert.match(asyncConfigs[0].inputs.functionName, /sweep-fn/);
    });

    it("lets Lambda assume each function's role only for this account (aws:SourceAccount)", () => {
        const roles = run
            .ofType("aws:iam/role:Role")
            .filter((r) => r.inputs.assumeRolePolicy.includes("lambda.amazonaws.com"));
        assert.deepStrictEqual(roles.map((r) => r.name).sort(), ["scheduler-role", "sweep-role"]);
        for (const r of roles) {
            const [trust] = statements(r.inputs.assumeRolePolicy);
            assert.deepStrictEqual(trust.Condition, { StringEquals: { "aws:SourceAccount": "123456789012" } }, r.name);
        }
    });

    it("says once at preview what dind: privileged grants, and nothing for a stack without it", async () => {
        const warned: string[] = [];
        const original = console.warn;
        console.warn = (...args: unknown[]) => {
            warned.push(args.join(" "));
        };
        try {
            await runProgram({
                ...baseConfig(),
                "scaledkite:queues": JSON.stringify({
                    a: { dind: "privileged" },
                    b: { dind: "privileged" },
                    c: { dind: "rootless" },
                }),
            });
            const before = warned.length;
            await runProgram(baseConfig());
            assert.strictEqual(warned.length, before, "no warning without privileged dind");
        } finally {
            console.warn = original;
        }
        const root = warned.filter((w) => w.includes("dind: privileged"));
        assert.strictEqual(root.length, 1, `once for the stack: ${JSON.stringify(warned)}`);
        assert.match(root[0], /queues a, b run dind: privileged: .* can be root on its node .* Use dind: rootless/);
    });

    it("keeps worker pods from the node's instance metadata service (and so its IAM role)", () => {
        const policy = run.named(
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "workers-no-instance-metadata",
        ).inputs;
        assert.strictEqual(policy.metadata.namespace, "buildkite");
        assert.deepStrictEqual(policy.spec.egress[0].to[0].ipBlock, {
            cidr: "0.0.0.0/0",
            except: ["169.254.169.254/32"],
        });
    });

    it("runs the Lambda on nodejs24.x with its own role, a log group with retention, and no broad policies", () => {
        const fn = run.named("aws:lambda/function:Function", "scheduler-fn").inputs;
        assert.strictEqual(fn.runtime, "nodejs24.x");
        assert.match(fn.role, /scheduler-role/);
        assert.strictEqual(fn.memorySize, 512, "the measured default (README Performance)");
        assert.strictEqual(fn.loggingConfig.logGroup, "/scaledkite/test/scheduler");
        assert.strictEqual(run.named("aws:cloudwatch/logGroup:LogGroup", "scheduler-logs").inputs.retentionInDays, 14);
        assert.strictEqual(
            run.ofType("aws:iam/rolePolicyAttachment:RolePolicyAttachment").length,
            0,
            "no managed policy is attached",
        );
        for (const role of run.ofType("aws:iam/role:Role"))
            assert.strictEqual(role.inputs.managedPolicyArns, undefined);
    });

    it("grants no wildcard action and no wildcard resource", () => {
        const policies = [
            ...run.ofType("aws:iam/rolePolicy:RolePolicy"),
            ...run.ofType("aws:sqs/queuePolicy:QueuePolicy"),
        ];
        assert.ok(policies.length >= 2);
        for (const p of policies) {
            for (const s of statements(p.inputs.policy)) {
                for (const action of [s.Action].flat()) assert.ok(!action.includes("*"), `wildcard action ${action}`);
                // ecr:GetAuthorizationToken is the one action AWS grants on "*" only.
                const tokenOnly = [s.Action].flat().join() === "ecr:GetAuthorizationToken";
                for (const resource of [s.Resource].flat())
                    assert.ok(resource !== "*" || tokenOnly, `wildcard resource in ${p.name}`);
            }
        }
        const role = statements(run.named("aws:iam/rolePolicy:RolePolicy", "scheduler-policy").inputs.policy);
        assert.deepStrictEqual(
            role
                .map((s) => s.Action)
                .flat()
                .sort(),
            [
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
            ],
        );
        assert.match(role[1].Resource, /scheduler-events/, "its own event queue only");
        const sweep = statements(run.named("aws:iam/rolePolicy:RolePolicy", "sweep-policy").inputs.policy);
        assert.deepStrictEqual(
            sweep
                .map((s) => s.Action)
                .flat()
                .sort(),
            ["logs:CreateLogStream", "logs:PutLogEvents"],
        );
    });

    it("keeps secrets out of plain text: not in outputs, the Lambda code or its environment", async () => {
        const code = await lambdaCode(run);
        const fn = run.named("aws:lambda/function:Function", "scheduler-fn").inputs;
        for (const secret of [
            "bk-agent-token-SECRET-VALUE",
            "ghp_ENV-SECRET-VALUE",
            "GIT-SECRET-VALUE",
            "SSH-SECRET-VALUE",
        ]) {
            assert.ok(!code.includes(secret), `${secret} in the Lambda code`);
            assert.ok(!(await lambdaCode(run, "sweep-fn")).includes(secret), `${secret} in the sweep's code`);
            assert.ok(!JSON.stringify(fn).includes(secret), `${secret} in the function's inputs`);
            assert.ok(!JSON.stringify(run.outputs).includes(secret), `${secret} in the stack outputs`);
        }
        assert.strictEqual(fn.environment, undefined);
    });

    it("outputs what a user needs next", () => {
        for (const key of [
            "namespace",
            "queues",
            "functionName",
            "sweepFunctionName",
            "schedulerRoleArn",
            "eventRuleArn",
            "cancelRuleArn",
            "deadLetterQueueUrl",
            "eventQueueUrl",
            "logGroupName",
            "watchWorkers",
            "workerRoleArn",
            "agentTokenSource",
            "tokenSyncFunctionName",
        ]) {
            assert.ok(run.outputs[key] !== undefined, `output ${key}`);
        }
        assert.deepStrictEqual(run.outputs.queues, ["dynamic", "docker-free"]);
    });

    it("packages only what the Lambda loads (no Pulumi SDKs, no Kubernetes client, no dev tools)", async () => {
        const paths = Object.keys(await lambdaArchive(run));
        assert.ok(paths.includes("node_modules/@smithy/signature-v4"));
        assert.ok(paths.includes("node_modules/@smithy/hash-node"));
        for (const p of paths) {
            assert.ok(
                !/@pulumi|@kubernetes|typescript|mocha|ts-node|js-yaml|zod|node_modules\/node$/.test(p),
                `${p} should not be packaged`,
            );
        }
    });

    it("keeps deploy-time code out of the Lambdas: no Pulumi SDK, no config parser, no dev-only package in what they run", async () => {
        for (const fn of ["scheduler-fn", "sweep-fn"]) {
            const code = await lambdaCode(run, fn);
            const required = [...code.matchAll(/require\(["']([^"']+)["']\)/g)].map((m) => m[1]);
            for (const r of required) {
                assert.ok(
                    !/^(@pulumi\/|typescript|ts-node|tsx|mocha|js-yaml|@kubernetes\/client-node)/.test(r),
                    `${fn} requires ${r}, a deploy-time or dev-only package`,
                );
            }
            for (const deployOnly of ["parseStackConfig", "readStackConfig", "WORKER_DEFAULTS", "ComponentResource"]) {
                assert.ok(!code.includes(deployOnly), `${fn}'s code holds ${deployOnly} (deploy-time code)`);
            }
        }
    });

    it("marks every Secret's data secret, so Pulumi encrypts it in state", () => {
        for (const secret of run.ofType("kubernetes:core/v1:Secret")) {
            assert.ok(
                JSON.stringify(secret.inputs.stringData).includes("4dabf18193072939515e22adb298388d"),
                `${secret.name} stringData is a secret value`,
            );
        }
    });

    it("alarms when the DLQ holds anything or the Lambda errs, and counts invalid events", () => {
        const alarms = run.ofType("aws:cloudwatch/metricAlarm:MetricAlarm").map((a) => a.inputs);
        assert.deepStrictEqual(
            alarms.map((a) => a.metricName).sort(),
            ["ApproximateNumberOfMessagesVisible", "Errors", "Errors"],
            "DLQ, scheduler errors, sweep errors",
        );
        const dlq = alarms.find((a) => a.namespace === "AWS/SQS")!;
        assert.strictEqual(dlq.metricName, "ApproximateNumberOfMessagesVisible");
        assert.match(dlq.dimensions.QueueName, /scheduler-dlq/);
        assert.strictEqual(dlq.threshold, 0);
        const errors = alarms.find((a) => a.namespace === "AWS/Lambda")!;
        assert.strictEqual(errors.metricName, "Errors");
        assert.deepStrictEqual(dlq.alarmActions, [], "no topic configured");
        const filter = run.named("aws:cloudwatch/logMetricFilter:LogMetricFilter", "scheduler-invalid-events").inputs;
        assert.strictEqual(filter.logGroupName, "/scaledkite/test/scheduler");
        // A JSON pattern on the decision line's own fields: exact, so no text inside a reason can match it.
        assert.strictEqual(filter.pattern, '{ $.msg = "scaledkite.schedule" && $.outcome = "invalid" }');
    });

    it("creates a dashboard named after the stack: start latency and schedule delay per queue, outcomes, queues, Lambdas, sweep and workers", () => {
        const dashboard = run.one("aws:cloudwatch/dashboard:Dashboard").inputs;
        assert.strictEqual(dashboard.dashboardName, "scaledkite-test");
        assert.strictEqual(run.outputs.dashboardName, "scaledkite-test", "a stack output");
        const widgets: { properties: { title: string; region: string; metrics: unknown[][] } }[] = JSON.parse(
            dashboard.dashboardBody,
        ).widgets;
        const byTitle = (prefix: string) => widgets.find((w) => w.properties.title.startsWith(prefix))!.properties;
        assert.deepStrictEqual(
            widgets.map((w) => w.properties.title.replace(/[:(].*/, "").trim()),
            [
                "Start latency",
                "Schedule delay",
                "Events by outcome",
                "Event queue and dead-letter queue",
                "Lambda errors, throttles and duration",
                "Sweep actions",
                "Workers running and pending",
                "Workers given up on",
            ],
        );
        // How soon a worker that will never run is failed, per reason, from the sweep's log lines.
        const givenUp = byTitle("Workers given up on").metrics;
        assert.deepStrictEqual(givenUp[0], [
            "Scaledkite",
            "UnrunnableAfter",
            "Namespace",
            "buildkite",
            "Reason",
            "unschedulable",
            { stat: "p50", label: "unschedulable p50" },
        ]);
        assert.strictEqual(givenUp.length, 14, "p50 and max for each of the 7 reasons");
        assert.ok(widgets.every((w) => w.properties.region === "us-east-1"));
        // p50, p90 and p99 for each queue, on the metric the sweep's log lines carry (test/metrics.test.ts).
        const latency = byTitle("Start latency").metrics;
        assert.deepStrictEqual(
            latency.map((m) => [m[1], m[5], (m[6] as { stat: string }).stat]),
            [
                ["StartLatency", "dynamic", "p50"],
                ["StartLatency", "dynamic", "p90"],
                ["StartLatency", "dynamic", "p99"],
                ["StartLatency", "docker-free", "p50"],
                ["StartLatency", "docker-free", "p90"],
                ["StartLatency", "docker-free", "p99"],
            ],
        );
        assert.deepStrictEqual(latency[0].slice(0, 4), ["Scaledkite", "StartLatency", "Namespace", "buildkite"]);
        assert.ok(
            byTitle("Schedule delay").metrics.every((m) => m.includes("Outcome") && m.includes("created")),
            "delay of created workers",
        );
        assert.strictEqual(
            byTitle("Events by outcome").metrics.length,
            3 * 7,
            "each outcome (refused too) for each queue and for events of no queue",
        );
        const sqs = byTitle("Event queue").metrics;
        assert.ok(
            sqs.some((m) => m[1] === "ApproximateNumberOfMessagesVisible" && /scheduler-dlq/.test(String(m[3]))),
            "DLQ depth",
        );
        assert.ok(
            sqs.some((m) => /scheduler-events/.test(String(m[3]))),
            "the event queue",
        );
        const fns = byTitle("Lambda errors").metrics.map((m) => String(m[3]));
        assert.ok(fns.some((f) => /scheduler/.test(f)) && fns.some((f) => /sweep/.test(f)), "both Lambdas");
        assert.strictEqual(byTitle("Workers running").metrics.length, 2 * 2);
    });

    it("runs the sweep every minute with its own identity, which alone may read the agent token", () => {
        const schedule = run.named("aws:cloudwatch/eventRule:EventRule", "sweep-schedule").inputs;
        assert.strictEqual(schedule.scheduleExpression, "rate(1 minute)");
        assert.strictEqual(schedule.eventBusName, undefined, "the default bus");
        const fn = run.named("aws:lambda/function:Function", "sweep-fn").inputs;
        assert.strictEqual(fn.runtime, "nodejs24.x");
        assert.strictEqual(fn.reservedConcurrentExecutions, 1, "sweeps never overlap");
        assert.strictEqual(
            run.named("aws:lambda/function:Function", "scheduler-fn").inputs.reservedConcurrentExecutions,
            undefined,
            "the scheduler uses the unreserved pool unless told",
        );
        assert.match(fn.role, /sweep-role/);
        assert.deepStrictEqual(run.named("aws:eks/accessEntry:AccessEntry", "sweep-access").inputs.kubernetesGroups, [
            "scaledkite:sweeper",
        ]);
        const role = run.named("kubernetes:rbac.authorization.k8s.io/v1:Role", "workers-sweeper").inputs;
        assert.deepStrictEqual(
            role.rules[2],
            { apiGroups: [""], resources: ["events"], verbs: ["list"] },
            "when a worker's container first failed to start",
        );
        assert.deepStrictEqual(role.rules[3], {
            apiGroups: [""],
            resources: ["secrets"],
            verbs: ["get"],
            resourceNames: ["scaledkite-agent-token"],
        });
        assert.deepStrictEqual(
            run.named("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "workers-sweeper").inputs.subjects[0].name,
            "scaledkite:sweeper",
        );
    });

    it("lets the Lambdas' groups create only worker Jobs of Scaledkite's shape (a ValidatingAdmissionPolicy for the namespace)", () => {
        const policy = run.named(
            "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy",
            "workers-job-shape",
        ).inputs;
        assert.strictEqual(policy.metadata.name, "scaledkite-workers-buildkite");
        assert.match(policy.spec.matchConditions[0].expression, /\["scaledkite:scheduler", "scaledkite:sweeper"\]/);
        assert.ok(
            policy.spec.validations.some((v: { expression: string }) =>
                v.expression.includes('["buildkite/agent:3.138.3"]'),
            ),
            "the stack's images (no dind by default)",
        );
        const binding = run.named(
            "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding",
            "workers-job-shape",
        ).inputs;
        assert.deepStrictEqual(
            [
                binding.spec.policyName,
                binding.spec.validationActions,
                binding.spec.matchResources.namespaceSelector.matchLabels,
            ],
            ["scaledkite-workers-buildkite", ["Deny"], { "kubernetes.io/metadata.name": "buildkite" }],
        );
    });

    describe("with spend caps and an alarm topic", () => {
        it("puts a ResourceQuota on the namespace and notifies the topic", async () => {
            const r = await runProgram({
                ...baseConfig(),
                "scaledkite:maxConcurrentJobs": "20",
                "scaledkite:maxCpu": "40",
                "scaledkite:maxMemory": "80Gi",
                "scaledkite:alarmTopicArn": "arn:aws:sns:us-east-1:123456789012:ci-alerts",
            });
            const quota = r.one("kubernetes:core/v1:ResourceQuota").inputs;
            assert.strictEqual(quota.metadata.namespace, "buildkite");
            assert.deepStrictEqual(quota.spec.hard, {
                "count/jobs.batch": "20",
                "requests.cpu": "40",
                "requests.memory": "80Gi",
            });
            for (const alarm of r.ofType("aws:cloudwatch/metricAlarm:MetricAlarm")) {
                assert.deepStrictEqual(alarm.inputs.alarmActions, ["arn:aws:sns:us-east-1:123456789012:ci-alerts"]);
            }
        });
    });

    describe("with a Fargate queue", () => {
        it("creates a Fargate profile selecting that queue's workers, with a pod execution role", async () => {
            const r = await runProgram({
                ...baseConfig(),
                "scaledkite:queues": JSON.stringify({ dynamic: {}, small: { fargate: true, dind: false } }),
                "scaledkite:fargateSubnetIds": JSON.stringify(["subnet-0abc", "subnet-0def"]),
            });
            const profile = r.one("aws:eks/fargateProfile:FargateProfile").inputs;
            assert.strictEqual(profile.clusterName, "ci-cluster");
            assert.deepStrictEqual(profile.subnetIds, ["subnet-0abc", "subnet-0def"]);
            assert.deepStrictEqual(profile.selectors, [
                { namespace: "buildkite", labels: { "scaledkite.io/fargate-queue": "small" } },
            ]);
            const attachment = r.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment").inputs;
            assert.strictEqual(attachment.policyArn, "arn:aws:iam::aws:policy/AmazonEKSFargatePodExecutionRolePolicy");
            assert.match(
                attachment.role,
                /fargate-pods/,
                "the managed policy is on the Fargate role, not the Lambda's",
            );
            const [trust] = statements(r.named("aws:iam/role:Role", "workers-fargate-pods").inputs.assumeRolePolicy);
            assert.deepStrictEqual(
                trust.Condition,
                { ArnLike: { "aws:SourceArn": "arn:aws:eks:us-east-1:123456789012:fargateprofile/ci-cluster/*" } },
                "only this cluster's Fargate profiles may use the role",
            );
        });
    });

    describe("in a VPC, with reserved concurrency", () => {
        it("puts every Lambda in the configured subnets and security groups, lets each role manage its interfaces, and reserves what was asked", async () => {
            const config: Record<string, string> = {
                ...baseConfig(),
                "scaledkite:agentTokenSecretArn":
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:ci/bk-token-AbC123",
                "scaledkite:lambdaSubnetIds": JSON.stringify(["subnet-0abc1234", "subnet-0def5678"]),
                "scaledkite:lambdaSecurityGroupIds": JSON.stringify(["sg-0123abcd"]),
                "scaledkite:schedulerConcurrency": "50",
            };
            delete config["scaledkite:agentToken"];
            const r = await runProgram(config);
            const fns = r.ofType("aws:lambda/function:Function");
            assert.deepStrictEqual(fns.map((f) => f.name).sort(), ["scheduler-fn", "sweep-fn", "token-sync-fn"]);
            for (const f of fns) {
                assert.deepStrictEqual(
                    f.inputs.vpcConfig,
                    { subnetIds: ["subnet-0abc1234", "subnet-0def5678"], securityGroupIds: ["sg-0123abcd"] },
                    f.name,
                );
            }
            assert.strictEqual(
                r.named("aws:lambda/function:Function", "scheduler-fn").inputs.reservedConcurrentExecutions,
                50,
            );
            const vpcPolicies = r.ofType("aws:iam/rolePolicy:RolePolicy").filter((p) => p.name.endsWith("-vpc"));
            assert.deepStrictEqual(vpcPolicies.map((p) => p.name).sort(), [
                "scheduler-vpc",
                "sweep-vpc",
                "token-sync-vpc",
            ]);
            assert.ok(statements(vpcPolicies[0].inputs.policy)[0].Action.includes("ec2:CreateNetworkInterface"));
        });
    });

    describe("with an existing role", () => {
        it("uses it and creates no role of its own", async () => {
            const r = await runProgram({
                ...baseConfig(),
                "scaledkite:roleArn": "arn:aws:iam::123456789012:role/ci-scheduler",
                "scaledkite:sweepInterval": "0",
            });
            assert.strictEqual(r.ofType("aws:iam/role:Role").length, 0);
            assert.strictEqual(
                r.one("aws:lambda/function:Function").inputs.role,
                "arn:aws:iam::123456789012:role/ci-scheduler",
            );
            assert.strictEqual(
                r.one("aws:eks/accessEntry:AccessEntry").inputs.principalArn,
                "arn:aws:iam::123456789012:role/ci-scheduler",
            );
            assert.strictEqual(r.outputs.sweepFunctionName, "sweep off");
            // No stack key, so no queue reads its jobs: the scheduler may touch worker Jobs only.
            assert.deepStrictEqual(
                r.named("kubernetes:rbac.authorization.k8s.io/v1:Role", "workers-scheduler").inputs.rules,
                [{ apiGroups: ["batch"], resources: ["jobs"], verbs: ["create", "get", "list", "delete"] }],
            );
        });
    });

    describe("with ECR registries", () => {
        const registries = [
            "111122223333.dkr.ecr.us-east-1.amazonaws.com",
            { registry: "444455556666.dkr.ecr.eu-west-1.amazonaws.com", push: true, repositories: ["ci/*", "cache"] },
        ];
        it("gives the workers a role that may pull, and push only where configured, bound by EKS Pod Identity", async () => {
            const r = await runProgram({ ...baseConfig(), "scaledkite:ecrRegistries": JSON.stringify(registries) });
            const trust = statements(r.named("aws:iam/role:Role", "ecr-workers").inputs.assumeRolePolicy);
            assert.deepStrictEqual(trust[0].Principal, { Service: "pods.eks.amazonaws.com" });
            assert.deepStrictEqual(
                trust[0].Condition.StringEquals,
                {
                    "aws:SourceAccount": "123456789012",
                    "aws:RequestTag/eks-cluster-name": "ci-cluster",
                    "aws:RequestTag/kubernetes-namespace": "buildkite",
                    "aws:RequestTag/kubernetes-service-account": "scaledkite-worker",
                },
                "only the workers' service account in this cluster and namespace, not any Pod Identity association in the account",
            );
            const policy = statements(r.named("aws:iam/rolePolicy:RolePolicy", "ecr-workers").inputs.policy);
            assert.deepStrictEqual(
                policy.map((s) => [s.Sid, s.Resource]),
                [
                    ["EcrLogin", "*"],
                    ["Pull0", ["arn:aws:ecr:us-east-1:111122223333:repository/*"]],
                    [
                        "PullPush1",
                        [
                            "arn:aws:ecr:eu-west-1:444455556666:repository/ci/*",
                            "arn:aws:ecr:eu-west-1:444455556666:repository/cache",
                        ],
                    ],
                ],
            );
            assert.ok(!policy[1].Action.includes("ecr:PutImage") && policy[2].Action.includes("ecr:PutImage"));
            const association = r.one("aws:eks/podIdentityAssociation:PodIdentityAssociation").inputs;
            assert.deepStrictEqual(
                [association.clusterName, association.namespace, association.serviceAccount],
                ["ci-cluster", "buildkite", "scaledkite-worker"],
            );
            const sa = r.named("kubernetes:core/v1:ServiceAccount", "ecr-workers").inputs;
            assert.deepStrictEqual(
                [sa.metadata.name, sa.automountServiceAccountToken, sa.metadata.annotations],
                ["scaledkite-worker", false, undefined],
            );
            const hooks = r.named("kubernetes:core/v1:ConfigMap", "ecr-login").inputs;
            assert.strictEqual(hooks.metadata.name, "scaledkite-ecr-login");
            assert.deepStrictEqual(Object.keys(hooks.data).sort(), ["ecr-login", "ecr-registries", "environment"]);
            assert.strictEqual(
                hooks.data["ecr-registries"],
                "111122223333.dkr.ecr.us-east-1.amazonaws.com\n444455556666.dkr.ecr.eu-west-1.amazonaws.com\n",
            );
            assert.match(hooks.data.environment, /\/buildkite\/scaledkite-hooks\/ecr-login"$/m);
            assert.match(String(r.outputs.workerRoleArn), /ecr-workers/);
        });

        it("binds the role with IRSA instead when asked: trust in the cluster's OIDC issuer for the one service account", async () => {
            const r = await runProgram({
                ...baseConfig(),
                "scaledkite:ecrRegistries": JSON.stringify(registries),
                "scaledkite:workerIdentity": "irsa",
            });
            assert.strictEqual(r.ofType("aws:eks/podIdentityAssociation:PodIdentityAssociation").length, 0);
            const [trust] = statements(r.named("aws:iam/role:Role", "ecr-workers").inputs.assumeRolePolicy);
            const issuer = "oidc.eks.us-east-1.amazonaws.com/id/ABCDEF0123456789";
            assert.strictEqual(trust.Principal.Federated, `arn:aws:iam::123456789012:oidc-provider/${issuer}`);
            assert.deepStrictEqual(trust.Condition.StringEquals, {
                [`${issuer}:sub`]: "system:serviceaccount:buildkite:scaledkite-worker",
                [`${issuer}:aud`]: "sts.amazonaws.com",
            });
            const sa = r.named("kubernetes:core/v1:ServiceAccount", "ecr-workers").inputs;
            assert.match(sa.metadata.annotations["eks.amazonaws.com/role-arn"], /ecr-workers/);
        });
    });

    describe("with the agent token in Secrets Manager", () => {
        const ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ci/buildkite-agent-token-AbC123";
        let r: ProgramRun;
        before(async () => {
            const config: Record<string, string> = {
                ...baseConfig(),
                "scaledkite:agentTokenSecretArn": ARN,
                "scaledkite:agentTokenSecretKey": "token",
            };
            delete config["scaledkite:agentToken"];
            r = await runProgram(config);
        });

        it("creates the agent token Secret with no value, so the token never enters Pulumi", () => {
            const secret = r.named("kubernetes:core/v1:Secret", "workers-agent-token");
            assert.strictEqual(secret.inputs.stringData, undefined);
            assert.strictEqual(secret.inputs.data, undefined);
            assert.strictEqual(secret.inputs.metadata.annotations["scaledkite.io/token-source"], ARN);
            assert.strictEqual(r.outputs.agentTokenSource, ARN);
        });

        it("gives the sync its own identity, which may only read and update that Secret", () => {
            const role = r.named("kubernetes:rbac.authorization.k8s.io/v1:Role", "workers-token-sync").inputs;
            assert.deepStrictEqual(role.rules, [
                {
                    apiGroups: [""],
                    resources: ["secrets"],
                    verbs: ["get", "patch"],
                    resourceNames: ["scaledkite-agent-token"],
                },
            ]);
            const binding = r.named("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "workers-token-sync").inputs;
            assert.deepStrictEqual(
                binding.subjects.map((s: { name: string }) => s.name),
                ["scaledkite:token-sync"],
            );
            assert.deepStrictEqual(
                r.named("aws:eks/accessEntry:AccessEntry", "token-sync-access").inputs.kubernetesGroups,
                ["scaledkite:token-sync"],
            );
            const policy = statements(r.named("aws:iam/rolePolicy:RolePolicy", "token-sync-policy").inputs.policy);
            assert.deepStrictEqual(
                policy
                    .map((s) => s.Action)
                    .flat()
                    .sort(),
                ["kms:Decrypt", "logs:CreateLogStream", "logs:PutLogEvents", "secretsmanager:GetSecretValue"],
            );
            for (const st of policy) assert.ok(st.Resource !== "*", `wildcard resource in ${st.Sid}`);
        });

        it("packs the AWS SDK's Secrets Manager client into the token sync alone: the scheduler and the sweep leave it out", async () => {
            const packaged = async (fn: string) =>
                Object.keys(await lambdaArchive(r, fn)).filter((p) =>
                    p.startsWith("node_modules/@aws-sdk/client-secrets-manager"),
                );
            assert.ok((await packaged("token-sync-fn")).length > 0, "the token sync's package holds the client");
            assert.match(await lambdaCode(r, "token-sync-fn"), /require\(["']@aws-sdk\/client-secrets-manager["']\)/);
            for (const fn of ["scheduler-fn", "sweep-fn"])
                assert.deepStrictEqual(await packaged(fn), [], `${fn} packs no Secrets Manager client`);
            for (const fn of ["scheduler-fn", "sweep-fn", "token-sync-fn"]) {
                assert.ok(
                    !Object.keys(await lambdaArchive(r, fn)).some((p) => p.includes("zod")),
                    `${fn} packs no config schema library`,
                );
            }
        });

        it("syncs during pulumi up, on the secret's change events, and on a schedule", () => {
            const now = r.one("aws:lambda/invocation:Invocation").inputs;
            assert.deepStrictEqual(JSON.parse(now.input), { source: "scaledkite.deploy" });
            assert.strictEqual(now.triggers.secretArn, ARN);
            const changed = JSON.parse(
                r.named("aws:cloudwatch/eventRule:EventRule", "token-sync-secret-changed").inputs.eventPattern,
            );
            assert.deepStrictEqual(changed.source, ["aws.secretsmanager"]);
            assert.ok(
                changed.detail.eventName.includes("RotationSucceeded") &&
                    changed.detail.eventName.includes("PutSecretValue"),
            );
            assert.strictEqual(
                r.named("aws:cloudwatch/eventRule:EventRule", "token-sync-schedule").inputs.scheduleExpression,
                "rate(5 minutes)",
            );
            assert.strictEqual(r.named("aws:lambda/function:Function", "token-sync-fn").inputs.runtime, "nodejs24.x");
            assert.ok(r.named("aws:cloudwatch/metricAlarm:MetricAlarm", "token-sync-errors"));
        });

        it("captures the ARN and key in the sync's code, and no secret", async () => {
            const code = await lambdaCode(r, "token-sync-fn");
            assert.ok(code.includes(ARN) && code.includes('"token"'));
            assert.ok(!code.includes("bk-agent-token-SECRET-VALUE"));
        });
    });

    describe("bad configuration", () => {
        const cases: [string, Record<string, string>, string[], RegExp][] = [
            ["a missing cluster", { "scaledkite:cluster": "" }, [], /scaledkite:cluster is required/],
            [
                "an invalid job prefix",
                { "scaledkite:jobPrefix": "Build_" },
                [],
                /scaledkite:jobPrefix "Build_" would not make a DNS-1123 Job name/,
            ],
            ["a typo in a key", { "scaledkite:queus": "{}" }, [], /scaledkite:queus is not a Scaledkite setting/],
            [
                "an agent token in plain text",
                {},
                ["scaledkite:env", "scaledkite:gitCredentials"],
                /scaledkite:agentToken is stored in plain text: set it again with pulumi config set --secret/,
            ],
        ];
        for (const [name, override, secretKeys, message] of cases) {
            it(`fails with a clear message for ${name}`, async () => {
                await assert.rejects(runProgram({ ...baseConfig(), ...override }, secretKeys), (e: Error) => {
                    assert.match(e.message, message);
                    assert.ok(!/\n\s+at /.test(e.message), "no stack trace in the message");
                    return true;
                });
            });
        }
    });
});
