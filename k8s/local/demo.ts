/**
 * npm run demo: Scaledkite end to end on this machine, no AWS account needed.
 *
 * Brings the local control plane up, creates what the `dev` stack's Kubernetes side needs there
 * (namespace, Secrets with placeholder values, the scheduler's Role and binding), pushes the
 * documented sample events through the Lambda's code path (EKS token -> API server -> RBAC), shows
 * each decision and the worker Jobs running to completion, then brings everything down.
 */
import type * as K8s from "@kubernetes/client-node";
import * as fs from "fs";
import * as path from "path";
import { readStackFile } from "../../scheduler/cli";
import { parseStackConfig, schedulerSettings } from "../../scheduler/config";
import { createEventHandler, Decision } from "../../scheduler/handler";
import { AGENT_TOKEN_KEY, ECR_HOOKS_CONFIGMAP, GIT_CREDENTIALS_KEY, HOOKS_CONFIGMAP, SECRET_NAMES, WORKER_SERVICE_ACCOUNT } from "../../scheduler/settings";
import { ecrHookFiles } from "../ecrLogin";
import { schedulerRbac } from "../rbac";
import { localJobClient } from "./awsIdentities";
import { down, PROJECT_ROOT, up } from "./cluster";

const SAMPLE = path.join(PROJECT_ROOT, "test", "fixtures", "job-scheduled.json");
const say = (s = "") => console.log(s);

function withJob(event: any, uuid: string, rules: string[], label: string): any {
    const e = JSON.parse(JSON.stringify(event));
    e.id = `demo-${uuid.slice(0, 8)}`;
    e.detail.job.uuid = uuid;
    e.detail.job.agent_query_rules = rules;
    e.detail.job.label = label;
    return e;
}

async function createAll(kc: K8s.KubeConfig, objects: object[]): Promise<void> {
    const k8s: typeof K8s = require("@kubernetes/client-node");
    const client = k8s.KubernetesObjectApi.makeApiClient(kc);
    for (const obj of objects) {
        try {
            await client.create(obj as K8s.KubernetesObject);
        } catch (e) {
            if ((e as { code?: number }).code !== 409) throw e;
        }
    }
}

function describeDecision(d: Decision): string {
    const what = d.job ? ` ${d.job}` : d.jobUuid ? ` job ${d.jobUuid}` : "";
    return `${d.outcome.padEnd(8)}${what} (${d.reason}; ${d.ms} ms)`;
}

async function main(): Promise<void> {
    say("1. Local control plane (etcd, kube-apiserver, kube-controller-manager, pod runner)");
    const state = await up((s) => say(`   ${s}`));
    try {
        const k8s: typeof K8s = require("@kubernetes/client-node");
        const kc = new k8s.KubeConfig();
        kc.loadFromFile(state.kubeconfig);

        const config = parseStackConfig(readStackFile(path.join(PROJECT_ROOT, "Pulumi.dev.yaml")), { requireSecrets: false });
        const settings = schedulerSettings({ ...config, secrets: { ...config.secrets, env: true, gitCredentials: true } });
        const ns = settings.namespace;
        say(`\n2. The dev stack's Kubernetes side in namespace "${ns}" (placeholder secret values)`);
        const secret = (name: string, data: Record<string, string>) => ({ apiVersion: "v1", kind: "Secret", metadata: { name, namespace: ns }, stringData: data });
        await createAll(kc, [
            { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } },
            secret(SECRET_NAMES.agentToken, { [AGENT_TOKEN_KEY]: "demo-agent-token" }),
            secret(SECRET_NAMES.env, { GITHUB_TOKEN: "demo" }),
            secret(SECRET_NAMES.gitCredentials, { [GIT_CREDENTIALS_KEY]: "https://demo:demo@github.com" }),
            ...(Object.keys(config.hooks).length ? [{ apiVersion: "v1", kind: "ConfigMap", metadata: { name: HOOKS_CONFIGMAP, namespace: ns }, data: config.hooks }] : []),
            ...(config.ecr ? [
                { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: WORKER_SERVICE_ACCOUNT, namespace: ns }, automountServiceAccountToken: false },
                { apiVersion: "v1", kind: "ConfigMap", metadata: { name: ECR_HOOKS_CONFIGMAP, namespace: ns }, data: ecrHookFiles(config.ecr.registries) },
            ] : []),
            ...schedulerRbac(ns),
        ]);
        say(`   namespace, 3 Secrets, the hooks ConfigMap, ${config.ecr ? "the workers' service account and ECR login hook, " : ""}Role and RoleBinding for group scaledkite:scheduler`);

        const sample = JSON.parse(fs.readFileSync(SAMPLE, "utf8"));
        const events: [string, unknown][] = [
            ["the documented sample (queue=dynamic)", sample],
            ["a job for the docker-free queue", withJob(sample, "0b7d5c1e-6a0f-4c1e-9a53-3f2b8d1c7e42", ["queue=docker-free", "os=linux"], ":lint: Lint")],
            ["the sample again (a duplicate delivery)", sample],
            ["a job for queue=gpu (not served here)", withJob(sample, "5f0e4a8b-2c3d-4e6f-8a9b-0c1d2e3f4a5b", ["queue=gpu"], ":gpu: Train")],
            ["a malformed event", { "detail-type": "Job Scheduled", detail: { job: { uuid: "not-a-uuid" } } }],
        ];
        say(`\n3. Events through the Lambda's code path (EKS token for the scheduler's IAM identity -> API server -> RBAC)`);
        const handle = createEventHandler(settings, localJobClient(state.server, state.caFile), () => {});
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

        say(`\n4. Worker Jobs running to completion`);
        const batch = kc.makeApiClient(k8s.BatchV1Api);
        const core = kc.makeApiClient(k8s.CoreV1Api);
        const seen = new Map<string, string>();
        const deadline = Date.now() + 60_000;
        while (Date.now() < deadline) {
            let done = 0;
            for (const name of created) {
                const job = await batch.readNamespacedJob({ name, namespace: ns });
                const pods = await core.listNamespacedPod({ namespace: ns, labelSelector: `job-name=${name}` });
                const pod = pods.items[0];
                const complete = job.status?.conditions?.find((c) => c.status === "True" && (c.type === "Complete" || c.type === "Failed"));
                const line = complete ? `Job ${complete.type}` : pod ? `pod ${pod.metadata!.name} ${pod.status?.phase ?? "Pending"}` : "waiting for the Job controller";
                if (seen.get(name) !== line) {
                    say(`   ${name}: ${line}`);
                    seen.set(name, line);
                }
                if (complete) done++;
            }
            if (done === created.length) break;
            await new Promise((r) => setTimeout(r, 250));
        }
        say(`\n   To look around yourself: SCALEDKITE_DEMO_KEEP=1 npm run demo, then`);
        say(`   kubectl --kubeconfig ${state.kubeconfig} get jobs,pods -n ${ns}`);
    } finally {
        say(`\n5. Down`);
        if (process.env.SCALEDKITE_DEMO_KEEP !== "1") await down((s) => say(`   ${s}`));
    }
}

main().catch((e) => {
    console.error(`demo failed: ${(e as Error).message.split("\n")[0]}`);
    process.exit(1);
});
