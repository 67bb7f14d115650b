/**
 * The worker Job of a job on a queue that takes its pod from the job: read the job through the
 * Stacks API, read what its step asks (core/step.ts), shape the queue's Job (core/stepPod.ts), and
 * create it. What the step asks that cannot run (a bad image, a plugin field of the wrong type, an
 * unknown resource class, a missing PodTemplate, an image or patch the queue forbids, a Job the API
 * server refuses) fails the Buildkite job at once with the field named, and is never retried: no
 * later attempt could pass. A job is never started in a shape other than the one its step asks for.
 */
import type { V1Job } from "@kubernetes/client-node";
import type { JobClient } from "../clients/kube";
import { configError, isKubernetesError } from "../core/errors";
import { queueSettings, type SchedulerSettings } from "../core/settings";
import { readStep, type StepProblem } from "../core/step";
import { asksForPod, shapeJob } from "../core/stepPod";
import type { StepSource } from "./stepSource";
import type { ScheduledJob } from "../core/event";

/** What the handler does next for a job. */
export type StepJob =
    | { gone: string }
    | { refused: string }
    | {
          /** Creates the Job; "refused" when the API server refused it and the job was failed in Buildkite (refusedBy says why). */
          create: () => Promise<"created" | "exists" | "refused">;
          refusedBy?: string;
          /** What the step asked, for the log line. */
          note?: string;
      };

/** The reason a Buildkite job was failed for, as its people read it (one line). Pure. */
export function refusalDetail(p: StepProblem): string {
    return `Scaledkite could not start this job: the step's ${p.field} ${p.problem}`;
}

/** What the scheduler needs of an event it schedules. */
interface Scheduled {
    jobUuid: string;
    queue: string;
    manifest: V1Job;
    job: ScheduledJob;
    tags: string[];
}

/** The Job to create for a scheduled job (see the top of this file). */
export async function jobFromStep(
    settings: SchedulerSettings,
    d: Scheduled,
    jobs: JobClient,
    steps: StepSource | undefined,
): Promise<StepJob> {
    const worker = queueSettings(settings, d.queue);
    if (!worker || worker.stepShape === "none") return { create: () => jobs.createJob(d.manifest) };
    if (!steps)
        throw configError([
            `queue ${d.queue} takes its pod from the job (stepShape ${worker.stepShape}), but this scheduler has no Stacks API to read jobs from: set scaledkite:stackKey (or turn the sweep on), or set the queue's stepShape to none`,
        ]);
    const input = await steps.read(d.jobUuid);
    if (!input) return { gone: "Buildkite has no such job any more (finished or cancelled): no worker needed" };
    const refuse = async (problem: StepProblem): Promise<{ refused: string }> => {
        const detail = refusalDetail(problem);
        await steps.fail(d.jobUuid, detail);
        return { refused: detail };
    };
    const read = readStep(input, worker.stepShape, d.tags);
    if ("refused" in read) return refuse(read.refused);
    const shape = read.shape;
    let template;
    if (shape.plugin?.podTemplate !== undefined) {
        template = await jobs.readPodTemplate?.(settings.namespace, shape.plugin.podTemplate);
        if (!template)
            return refuse({
                field: "plugins.kubernetes.podTemplate",
                problem: `names PodTemplate ${JSON.stringify(shape.plugin.podTemplate)}, which namespace ${settings.namespace} does not have: create it there (kubectl apply) or remove podTemplate`,
            });
    }
    const built = shapeJob(settings, d.queue, d.manifest, shape, template);
    if ("refused" in built) return refuse(built.refused);
    if (shape.unknownFields.length)
        await steps
            .notify(
                d.jobUuid,
                `Scaledkite ignored kubernetes plugin field(s) it does not know: ${shape.unknownFields.join(", ")}`,
            )
            .catch(() => {});
    const asked = asksForPod(shape);
    const result: Extract<StepJob, { create: unknown }> = {
        note: asked ? describe(shape) : undefined,
        create: async () => {
            try {
                return await jobs.createJob(built.job);
            } catch (e) {
                // The API server's own judgement of what the step asked (validation, the admission
                // policy): the same Job would be refused again, so the job fails now, with the reason.
                // (An RBAC 403 is the stack's problem, not the step's: it is thrown like any other failure.)
                if (!asked || !isKubernetesError(e) || e.retryable || (e.status !== 422 && e.status !== 400)) throw e;
                const detail = refusalDetail({
                    field: "pod",
                    problem: `was refused by the Kubernetes API server: ${e.detail ?? e.message}`,
                });
                await steps.fail(d.jobUuid, detail);
                result.refusedBy = detail;
                return "refused";
            }
        },
    };
    return result;
}

/** What a step asked, in a few words. Pure. */
function describe(shape: { image?: string; resourceClass?: string; plugin?: object }): string {
    return [
        shape.image && `image ${shape.image}`,
        shape.resourceClass && `resource_class ${shape.resourceClass}`,
        shape.plugin && "kubernetes plugin",
    ]
        .filter(Boolean)
        .join(", ");
}
