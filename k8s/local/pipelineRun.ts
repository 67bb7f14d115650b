/**
 * Runs a Buildkite pipeline file on the local cluster's real node, as Buildkite and Scaledkite would:
 * each step becomes the jobs Buildkite would create (pipeline.ts), which go into the stand-ins for
 * Buildkite's Stacks API (the job's env and command, read by the scheduler) and agent API (what the
 * real buildkite-agent in each worker pod acquires and runs); each job's Job Scheduled event goes
 * through the scheduler's own handler (EKS token for the scheduler's identity -> API server -> RBAC
 * and the admission policy). It waits for every job to end and says, per job, its state, exit status
 * and log. What users run as `npm run local-cluster -- pipeline FILE`, and how the compatibility
 * tests run agent-stack-k8s's own pipelines.
 */
import type * as K8s from "@kubernetes/client-node";
import * as fs from "fs";
import * as path from "path";
import { schedulerSettings, stackKeyOf } from "../../scheduler/config/config";
import type { StackConfig } from "../../scheduler/config/types";
import { stacksApi } from "../../scheduler/clients/stacksApi";
import { createEventHandler, type Decision } from "../../scheduler/schedule/lambda";
import { stacksStepSource } from "../../scheduler/schedule/stepSource";
import { AgentApiStandIn } from "./agentApiStandIn";
import { localJobClient } from "./awsIdentities";
import type { ClusterState } from "./cluster";
import { type GitHttpServer, serveLocalRepository } from "./gitHttpServer";
import { LOCAL_IMAGES, POD_GATEWAY_IP } from "./node";
import { type PipelineJob, pipelineJobs } from "./pipeline";
import { applyStack } from "./stack";
import { startStacksApi } from "./stacksApiStandIn";

/** How one job ended. */
export interface JobOutcome {
    job: PipelineJob;
    decision?: Decision;
    /** passed, failed (the command exited non-zero), refused (failed in Buildkite before a pod ran), not run (timed out, no worker). */
    result: "passed" | "failed" | "refused" | "not run";
    exitStatus?: string;
    /** Why Scaledkite failed the job in Buildkite (refused), or why it never ran. */
    reason?: string;
    log: string;
    /** The paths of the artifacts it uploaded. */
    artifacts: string[];
    seconds: number;
}

export interface PipelineRunOptions {
    state: ClusterState;
    config: StackConfig;
    stackName: string;
    /** The pipeline file's text. */
    text: string;
    /** What `{{.queue}}` becomes and the queue of steps that name none (default: the stack's first queue that takes its pod from the job). */
    queue?: string;
    /** A git repository to check out in each job (default: none, checkout skipped). */
    repo?: string;
    /** Extra Kubernetes objects for the workers' namespace first (Secrets, PodTemplates a pipeline names). */
    objects?: object[];
    timeoutMs?: number;
    log?: (line: string) => void;
}

export type PipelineRun = { outcomes: JobOutcome[]; skipped: string[] } | { error: string };

/**
 * The stack with this machine's images (no registry is reachable), and its env Secret on (it carries
 * the agent API stand-in's endpoint to every worker).
 */
function forLocalNode(config: StackConfig): StackConfig {
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
    return { ...config, queues, secrets: { ...config.secrets, env: true } };
}

/** The Job Scheduled event Buildkite sends for a job. */
function scheduledEvent(job: PipelineJob, n: number): object {
    return {
        version: "0",
        id: `pipeline-${job.uuid}`,
        "detail-type": "Job Scheduled",
        source: "aws.partner/buildkite.com/local/pipeline",
        time: new Date().toISOString(),
        detail: {
            version: 1,
            job: {
                uuid: job.uuid,
                type: "script",
                label: job.label,
                step_key: job.stepKey,
                command: job.command,
                agent_query_rules: job.agentQueryRules,
                state: "scheduled",
                runnable_at: new Date().toISOString(),
            },
            build: { uuid: "00000000-0000-4000-8000-000000000001", number: n, branch: "main", commit: "HEAD" },
            pipeline: { uuid: "00000000-0000-4000-8000-000000000002", slug: "local" },
            organization: { uuid: "00000000-0000-4000-8000-000000000003", slug: "local" },
        },
    };
}

/** Runs the pipeline; resolves when every job has ended or the timeout passed. */
export async function runPipeline(o: PipelineRunOptions): Promise<PipelineRun> {
    const log = o.log ?? (() => {});
    const config = forLocalNode(o.config);
    const queue =
        o.queue ??
        Object.keys(config.queues).find((q) => config.queues[q].stepShape !== "none") ??
        Object.keys(config.queues)[0];
    const parsed = pipelineJobs(o.text, queue);
    if ("error" in parsed) return { error: parsed.error };
    if (parsed.jobs.length === 0) return { outcomes: [], skipped: parsed.skipped };

    const k8s: typeof K8s = require("@kubernetes/client-node");
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(o.state.kubeconfig);
    const agentApi = await new AgentApiStandIn().start(POD_GATEWAY_IP);
    const stacks = await startStacksApi(undefined, (u) => agentApi.jobs.get(u)?.state);
    let git: GitHttpServer | undefined;
    try {
        if (o.repo) git = await serveLocalRepository(POD_GATEWAY_IP, o.repo);
        await applyStack(kc, config, {
            agentToken: agentApi.registrationToken,
            env: { BUILDKITE_AGENT_ENDPOINT: agentApi.endpoint },
        });
        const objects = k8s.KubernetesObjectApi.makeApiClient(kc);
        for (const obj of (o.objects ?? []) as K8s.KubernetesObject[]) {
            const placed = { ...obj, metadata: { ...obj.metadata, namespace: config.namespace } };
            await objects.create(placed).catch(async (e: { code?: number }) => {
                if (e.code === 409) await objects.replace(placed);
                else throw e;
            });
        }
        const settings = schedulerSettings(config, o.stackName);
        const stackKey = stackKeyOf(config, o.stackName) ?? `scaledkite-${o.stackName}`;
        const handle = createEventHandler(settings, localJobClient(o.state.server, o.state.caFile), () => {}, {
            steps: stacksStepSource(
                stacksApi(() => stacks.token, { endpoint: stacks.endpoint }),
                stackKey,
            ),
        });

        const started = Date.now();
        const decisions = new Map<string, Decision>();
        for (const [n, job] of parsed.jobs.entries()) {
            agentApi.addJob(job.uuid, { command: job.command, queue: job.queue, env: job.env, repo: git?.url });
            stacks.jobs.set(job.uuid, { id: job.uuid, env: agentApi.jobs.get(job.uuid)!.env, command: job.command });
            try {
                const d = await handle(scheduledEvent(job, n + 1));
                decisions.set(job.uuid, d);
                log(`${job.label}: ${d.outcome} (${d.reason})`);
            } catch (e) {
                log(`${job.label}: failed to schedule: ${(e as Error).message}`);
            }
        }

        const deadline = started + (o.timeoutMs ?? 10 * 60_000);
        const ended = (job: PipelineJob) => {
            const j = agentApi.jobs.get(job.uuid)!;
            return (
                stacks.finished.has(job.uuid) ||
                j.state === "finished" ||
                j.state === "canceled" ||
                !["created", "exists"].includes(decisions.get(job.uuid)?.outcome ?? "")
            );
        };
        while (Date.now() < deadline && !parsed.jobs.every(ended)) await new Promise((r) => setTimeout(r, 500));

        return {
            skipped: parsed.skipped,
            outcomes: parsed.jobs.map((job) => {
                const j = agentApi.jobs.get(job.uuid)!;
                const decision = decisions.get(job.uuid);
                const seconds = Math.round(((j.times.finished ?? Date.now()) - started) / 100) / 10;
                const artifacts = [...j.artifacts.values()].filter((a) => a.state === "finished").map((a) => a.path);
                const base = { job, decision, log: agentApi.text(job.uuid), artifacts, seconds };
                if (stacks.finished.has(job.uuid))
                    return { ...base, result: "refused", reason: stacks.finished.get(job.uuid) };
                if (j.state === "finished")
                    return { ...base, result: j.exitStatus === "0" ? "passed" : "failed", exitStatus: j.exitStatus };
                return {
                    ...base,
                    result: "not run",
                    reason: decision
                        ? `${decision.outcome}: ${decision.reason}${ended(job) ? "" : "; still not finished at the timeout"}`
                        : "never scheduled",
                };
            }),
        };
    } finally {
        await git?.close();
        await agentApi.stop();
        await stacks.close();
    }
}

/** The lines a person reads for one job. Pure. */
export function describeOutcome(o: JobOutcome, logLines = 20): string[] {
    const head = `${o.result === "passed" ? "✓" : "✗"} ${o.job.label} [${o.job.uuid.slice(0, 8)}] ${o.result}${o.exitStatus !== undefined ? ` (exit ${o.exitStatus})` : ""} after ${o.seconds} s`;
    const lines = [head];
    if (o.reason) lines.push(`    ${o.reason}`);
    const text = o.log
        .split("\n")
        .filter((l) => l.trim() !== "")
        .slice(-logLines);
    for (const l of text) lines.push(`    | ${l}`);
    return lines;
}

/** The repository a pipeline file belongs to (the nearest directory above it with `.git`), if any. */
export function repoOf(file: string): string | undefined {
    for (let dir = path.dirname(path.resolve(file)); ; dir = path.dirname(dir)) {
        if (fs.existsSync(path.join(dir, ".git"))) return dir;
        if (path.dirname(dir) === dir) return undefined;
    }
}
