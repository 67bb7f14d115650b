/**
 * The wait a user feels, on the real node: from the job's event to its worker's pod running and to
 * the agent starting the job (the agent API stand-in records when the agent calls `start`), split
 * into the steps of that chain. Images are already on the node (imported by the cluster), so no pull.
 *
 * Jobs run one after another, so each measures the chain, not contention on the 2-core node.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { AgentApiStandIn } from "../../k8s/local/agentApiStandIn";
import { type ClusterState } from "../../k8s/local/cluster";
import { POD_GATEWAY_IP } from "../../k8s/local/node";
import { createEventHandler } from "../../scheduler/schedule/lambda";
import { anEvent, newUuid } from "../helpers/builders";
import { creatorAs, deployStack, LOCAL_WORKER_IMAGES } from "../helpers/deploy";
import { adminConfig, k8sClient } from "../helpers/localCluster";

/**
 * The chain's milestones, in order; each is milliseconds after the event was handed to the handler.
 * Taken where they are exact: the handler's return; the pod's node (an API write, polled every 20 ms);
 * the containers' first and readiness log lines (containerd stamps each line in ns, on this clock);
 * the agent API stand-in's register, acquire and start. The kubelet's pod status is not used for
 * steps: it reaches the API server up to a second late.
 */
export const MILESTONES = [
    "job_created",
    "pod_scheduled",
    "agent_started",
    "agent_registered",
    "job_acquired",
    "job_started",
] as const;
type Milestone = (typeof MILESTONES)[number];

export interface EndToEndRun {
    /** Per job: each milestone, and when the pod's phase became Running. */
    jobs: (Record<Milestone, number> & { pod_running: number; dind_started?: number; dockerd_ready?: number })[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `count` jobs one after another on a stack of its own; resolves with each job's milestones. */
export async function endToEnd(
    state: ClusterState,
    namespace: string,
    count: number,
    extra: Record<string, unknown>,
    progress: (s: string) => void,
): Promise<EndToEndRun> {
    const api = await new AgentApiStandIn().start(POD_GATEWAY_IP);
    try {
        const stack = await deployStack(
            state,
            namespace,
            {
                ...LOCAL_WORKER_IMAGES,
                agentToken: api.registrationToken,
                env: { BUILDKITE_AGENT_ENDPOINT: api.endpoint },
                ttlSecondsAfterFinished: 600,
                backoffLimit: 0,
                ...extra,
            },
            "real",
        );
        const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
        const handle = createEventHandler(stack.settings, creatorAs(state), () => {});
        const jobs: EndToEndRun["jobs"] = [];
        for (let i = 0; i < count; i++) {
            const uuid = newUuid();
            api.addJob(uuid, { queue: "dynamic", command: "true" });
            const t0 = Date.now();
            const decision = await handle(
                anEvent().uuid(uuid).queue("dynamic").runnableAt(new Date(t0).toISOString()).build(),
            );
            if (decision.outcome !== "created") throw new Error(`job ${i}: ${decision.outcome}: ${decision.reason}`);
            const seen: Partial<Record<Milestone | "pod_running", number>> = { job_created: Date.now() - t0 };
            const name = decision.job!.split("/")[1];
            const deadline = t0 + 120_000;
            let podName: string | undefined;
            while (seen.job_started === undefined || seen.pod_running === undefined) {
                if (Date.now() > deadline)
                    throw new Error(
                        `job ${i} did not start within 120 s: ${JSON.stringify(seen)}; ${api.log(uuid).slice(-300)}`,
                    );
                const pods: V1Pod[] = (await core.listNamespacedPod({ namespace, labelSelector: `job-name=${name}` }))
                    .items;
                const now = Date.now() - t0;
                const pod = pods[0];
                const mark = (m: Milestone | "pod_running", cond: boolean | undefined) => {
                    if (cond && seen[m] === undefined) seen[m] = now;
                };
                podName ??= pod?.metadata?.name;
                mark("pod_scheduled", !!pod?.spec?.nodeName);
                mark("pod_running", pod?.status?.phase === "Running" || pod?.status?.phase === "Succeeded");
                const job = api.jobs.get(uuid)!;
                if (job.times.acquired && seen.job_acquired === undefined) seen.job_acquired = job.times.acquired - t0;
                if (job.times.started && seen.job_started === undefined) seen.job_started = job.times.started - t0;
                await sleep(20);
            }
            const registered = api.agents.find((a) => a.name === podName)?.registeredAt;
            if (registered) seen.agent_registered = registered - t0;
            const logTime = async (container: string, pattern?: RegExp) => {
                const text = await core.readNamespacedPodLog({
                    namespace,
                    name: podName!,
                    container,
                    timestamps: true,
                });
                const line = text.split("\n").find((l) => l && (!pattern || pattern.test(l)));
                return line ? Date.parse(line.slice(0, line.indexOf(" "))) - t0 : undefined;
            };
            // dind starts beside the agent and is off the agent's path (core/dind.ts): its times are
            // reported on their own, not as steps of the chain.
            const dind =
                stack.settings.queues.dynamic.dind !== "none"
                    ? { dind_started: await logTime("dind"), dockerd_ready: await logTime("dind", /API listen on/) }
                    : {};
            seen.agent_started = await logTime("agent");
            // A step seen late by the poll (it happened between two polls) is no later than the next one.
            for (let m = MILESTONES.length - 2; m >= 0; m--) {
                const [a, b] = [MILESTONES[m], MILESTONES[m + 1]];
                if (seen[a] === undefined || seen[a]! > seen[b]!) seen[a] = seen[b];
            }
            jobs.push({ ...(seen as EndToEndRun["jobs"][number]), ...dind });
            progress(
                `  job ${i + 1}/${count}: ${MILESTONES.map((m) => `${m} ${seen[m]}`).join(", ")}; pod Running (as the API saw it) ${seen.pod_running} ms`,
            );
            // Let the pod finish before the next job, so jobs do not overlap on the node.
            const until = Date.now() + 60_000;
            while (Date.now() < until) {
                const pod = (await core.listNamespacedPod({ namespace, labelSelector: `job-name=${name}` })).items[0];
                if (pod?.status?.phase === "Succeeded" || pod?.status?.phase === "Failed") break;
                await sleep(200);
            }
        }
        return { jobs };
    } finally {
        await api.stop();
    }
}

const percentile = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};

/** The run's figures: p50 and p99 of the two waits, and the share of each step in the median job's wait. Pure. */
export function endToEndFigures(run: EndToEndRun, prefix = ""): Record<string, number> {
    const out: Record<string, number> = {};
    const started = run.jobs.map((j) => j.job_started);
    out[`${prefix}event_to_pod_running_p50_ms`] = percentile(
        run.jobs.map((j) => j.pod_running),
        50,
    );
    out[`${prefix}event_to_pod_running_p99_ms`] = percentile(
        run.jobs.map((j) => j.pod_running),
        99,
    );
    out[`${prefix}event_to_job_started_p50_ms`] = percentile(started, 50);
    out[`${prefix}event_to_job_started_p99_ms`] = percentile(started, 99);
    out[`${prefix}end_to_end_jobs`] = run.jobs.length;
    // Each step's median duration, and its share of the sum of those medians.
    const steps = MILESTONES.map(
        (m, i) =>
            [
                m,
                percentile(
                    run.jobs.map((j) => j[m] - (i === 0 ? 0 : j[MILESTONES[i - 1]])),
                    50,
                ),
            ] as const,
    );
    const total = steps.reduce((a, [, d]) => a + d, 0);
    for (const extra of ["dind_started", "dockerd_ready"] as const) {
        const xs = run.jobs.map((j) => j[extra]).filter((x): x is number => x !== undefined);
        if (xs.length) out[`${prefix}${extra}_p50_ms`] = percentile(xs, 50);
    }
    for (const [m, d] of steps) {
        out[`${prefix}step_${m}_p50_ms`] = d;
        out[`${prefix}step_${m}_share`] = total ? Math.round((d / total) * 1000) / 1000 : 0;
    }
    return out;
}
