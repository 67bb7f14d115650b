/**
 * npm run demo: Scaledkite end to end on this machine, no AWS account and no Buildkite account needed.
 *
 * Uses the local cluster that runs, or brings one up (and then down again: it never stops a cluster
 * it did not start, and Ctrl-C stops what it started). Creates what the `dev` stack's Kubernetes side
 * needs there (namespace, Secrets with placeholder values, the scheduler's Role and binding), pushes
 * the documented sample events through the Lambda's code path (EKS token -> API server -> RBAC),
 * and shows each decision; then the worker pods run on the real node: the real buildkite-agent
 * acquires each job from a local stand-in for Buildkite's agent API and runs it (the sample job
 * builds and runs an image through the dind sidecar), and the demo prints the jobs' logs.
 */
import type * as K8s from "@kubernetes/client-node";
import * as fs from "fs";
import * as path from "path";
import { schedulerSettings } from "../../scheduler/config/config";
import { createEventHandler, type Decision } from "../../scheduler/schedule/lambda";
import { AgentApiStandIn } from "./agentApiStandIn";
import { localJobClient } from "./awsIdentities";
import { type ClusterState, down, PROJECT_ROOT, status, up } from "./cluster";
import { LOCAL_IMAGES, POD_GATEWAY_IP } from "./node";
import { applyStack, loadStack } from "./stack";
import { startStacksApi } from "./stacksApiStandIn";
import { stacksApi } from "../../scheduler/clients/stacksApi";
import { stacksStepSource } from "../../scheduler/schedule/stepSource";

const SAMPLE = path.join(PROJECT_ROOT, "test", "fixtures", "job-scheduled.json");
const say = (s = "") => console.log(s);

/** A sample event as JSON, with the fields the demo changes. */
interface SampleEvent {
    id?: string;
    detail: { job: { uuid: string; agent_query_rules: string[]; label: string } };
}

function withJob(event: SampleEvent, uuid: string, rules: string[], label: string): SampleEvent {
    const e = JSON.parse(JSON.stringify(event)) as SampleEvent;
    e.id = `demo-${uuid.slice(0, 8)}`;
    e.detail.job.uuid = uuid;
    e.detail.job.agent_query_rules = rules;
    e.detail.job.label = label;
    return e;
}

function describeDecision(d: Decision): string {
    const what = d.job ? ` ${d.job}` : d.jobUuid ? ` job ${d.jobUuid}` : "";
    return `${d.outcome.padEnd(8)}${what} (${d.reason}; ${d.ms} ms)`;
}

/** The commands the demo's jobs run: the sample job builds and runs an image through dind. */
const DOCKER_JOB = [
    "set -eu",
    "mkdir -p ctx && cd ctx",
    'cp "$(command -v buildkite-agent)" hello',
    "printf 'FROM scratch\\nCOPY hello /hello\\nENTRYPOINT [\"/hello\"]\\n' > Dockerfile",
    "echo '--- building an image in the dind sidecar'",
    "docker build -q -t demo-hello .",
    "echo '--- running it'",
    "docker run --rm demo-hello --version",
].join("\n");
const PLAIN_JOB = 'echo "hello from $BUILDKITE_AGENT_NAME on queue docker-free"; uname -sm';

let cleanup: (() => Promise<void>) | undefined;

async function main(): Promise<void> {
    const running = status().running;
    say(
        running
            ? "1. The local cluster that runs (left running afterwards)"
            : "1. A local cluster (control plane, kube-scheduler, a real kubelet node)",
    );
    // Ctrl-C while the cluster comes up still takes it down.
    if (!running) cleanup = () => down((s) => say(`   ${s}`));
    const state: ClusterState = running ? status().state! : await up((s) => say(`   ${s}`));
    const k8s: typeof K8s = require("@kubernetes/client-node");
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(state.kubeconfig);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const config = loadStack("dev");
    const ns = config.namespace;
    const nsExisted = await core.readNamespace({ name: ns }).then(
        () => true,
        () => false,
    );
    const api = state.node ? await new AgentApiStandIn().start(POD_GATEWAY_IP) : undefined;
    // Buildkite's Stacks API, where the scheduler reads each job of a queue that takes its pod from the job.
    const stacks = await startStacksApi(undefined, (u) => api?.jobs.get(u)?.state);
    let cleaned = false;
    cleanup = async () => {
        if (cleaned) return;
        cleaned = true;
        await api?.stop();
        await stacks.close();
        if (process.env.SCALEDKITE_DEMO_KEEP === "1") return;
        if (!running) await down((s) => say(`   ${s}`));
        else if (!nsExisted) {
            await core.deleteNamespace({ name: ns }).catch(() => {});
            say(`   deleted namespace ${ns}; the cluster keeps running`);
        }
    };
    try {
        // The dev stack as it is, but with the images this machine has (no registry is reachable).
        const queues = Object.fromEntries(
            Object.entries(config.queues).map(([q, w]) => [
                q,
                {
                    ...w,
                    image: LOCAL_IMAGES.agent,
                    dindImage: w.dind === "rootless" ? LOCAL_IMAGES.dindRootless : LOCAL_IMAGES.dind,
                },
            ]),
        );
        const settings = schedulerSettings({
            ...config,
            queues,
            secrets: { ...config.secrets, env: true, gitCredentials: true },
        });
        say(`\n2. The dev stack's Kubernetes side in namespace "${ns}" (placeholder secret values)`);
        await applyStack(
            kc,
            { ...config, queues },
            {
                agentToken: api?.registrationToken,
                gitCredentials: "https://demo:demo@github.com",
                env: { GITHUB_TOKEN: "demo", ...(api ? { BUILDKITE_AGENT_ENDPOINT: api.endpoint } : {}) },
            },
        );
        say(
            `   namespace, 3 Secrets, the hooks ConfigMap, ${config.ecr ? "the workers' service account and ECR login hook, " : ""}Role and RoleBinding for group scaledkite:scheduler, the admission policy for its Jobs' shape`,
        );

        const sample = JSON.parse(fs.readFileSync(SAMPLE, "utf8"));
        const plainUuid = "0b7d5c1e-6a0f-4c1e-9a53-3f2b8d1c7e42";
        for (const [uuid, queue, command] of [
            [sample.detail.job.uuid, "dynamic", DOCKER_JOB],
            [plainUuid, "docker-free", PLAIN_JOB],
        ]) {
            const job = api?.addJob(uuid, { queue, command });
            stacks.jobs.set(uuid, { id: uuid, env: job?.env ?? { BUILDKITE_COMMAND: command }, command });
        }
        const events: [string, unknown][] = [
            ["the documented sample (queue=dynamic)", sample],
            [
                "a job for the docker-free queue",
                withJob(sample, plainUuid, ["queue=docker-free", "os=linux"], ":lint: Lint"),
            ],
            ["the sample again (a duplicate delivery)", sample],
            [
                "a job for queue=gpu (not served here)",
                withJob(sample, "5f0e4a8b-2c3d-4e6f-8a9b-0c1d2e3f4a5b", ["queue=gpu"], ":gpu: Train"),
            ],
            ["a malformed event", { "detail-type": "Job Scheduled", detail: { job: { uuid: "not-a-uuid" } } }],
        ];
        say(
            `\n3. Events through the Lambda's code path (EKS token for the scheduler's IAM identity -> API server -> RBAC)`,
        );
        const handle = createEventHandler(settings, localJobClient(state.server, state.caFile), () => {}, {
            steps: stacksStepSource(
                stacksApi(() => stacks.token, { endpoint: stacks.endpoint }),
                "scaledkite-dev",
            ),
        });
        const created: string[] = [];
        for (const [what, event] of events) {
            say(`   ${what}`);
            try {
                const d = await handle(event);
                say(`     -> ${describeDecision(d)}`);
                if (d.outcome === "created" && d.job) created.push(d.job.split("/")[1]);
            } catch (e) {
                say(`     -> failed: ${(e as Error).message}`);
            }
        }

        say(
            `\n4. Worker pods on the ${state.node ? "real node: the real buildkite-agent runs each job" : "stand-in node (no real node runs)"}`,
        );
        const batch = kc.makeApiClient(k8s.BatchV1Api);
        const seen = new Map<string, string>();
        const deadline = Date.now() + 180_000;
        while (Date.now() < deadline) {
            let done = 0;
            for (const name of created) {
                const job = await batch.readNamespacedJob({ name, namespace: ns });
                const pods = await core.listNamespacedPod({ namespace: ns, labelSelector: `job-name=${name}` });
                const pod = pods.items[0];
                const complete = job.status?.conditions?.find(
                    (c) => c.status === "True" && (c.type === "Complete" || c.type === "Failed"),
                );
                const line = complete
                    ? `Job ${complete.type}`
                    : pod
                      ? `pod ${pod.metadata!.name} ${pod.status?.phase ?? "Pending"}`
                      : "waiting for the Job controller";
                if (seen.get(name) !== line) {
                    say(`   ${name}: ${line}`);
                    seen.set(name, line);
                }
                if (complete) done++;
            }
            if (done === created.length) break;
            await new Promise((r) => setTimeout(r, 250));
        }
        if (api) {
            say(`\n5. What Buildkite (the agent API stand-in) received`);
            for (const job of api.jobs.values()) {
                say(`   job ${job.id} (queue ${job.queue}): ${job.state}, exit status ${job.exitStatus ?? "none"}`);
                for (const line of api
                    .text(job.id)
                    .split("\n")
                    .filter((l) => l.trim() !== "")
                    .slice(-12)) {
                    say(`     | ${line}`);
                }
            }
        }
        say(`\n   To look around yourself: SCALEDKITE_DEMO_KEEP=1 npm run demo, then`);
        say(`   npm run kubectl -- get jobs,pods -n ${ns}; npm run kubectl -- logs -n ${ns} <pod> -c agent`);
    } finally {
        say(`\n6. Clean up`);
        await cleanup();
    }
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
        say(`\n${signal}: stopping what the demo started`);
        void (cleanup ?? (async () => {}))().finally(() => process.exit(130));
    });
}

main().catch((e) => {
    console.error(`demo failed: ${(e as Error).message.split("\n")[0]}`);
    process.exit(1);
});
