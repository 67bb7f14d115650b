/**
 * The handler on a queue that takes its pod from the job, with fakes of the Stacks API (StepSource)
 * and the Job client: what is read, what is failed in Buildkite, what is retried. The API server's own
 * refusals are in test/integration/steps.test.ts.
 */
import * as assert from "assert";
import type { V1Job } from "@kubernetes/client-node";
import { classifiedError, isRetryable, kubernetesError } from "../../scheduler/core/errors";
import { KUBERNETES_PLUGIN } from "../../scheduler/core/step";
import { createEventHandler } from "../../scheduler/schedule/lambda";
import type { StepInput, StepSource } from "../../scheduler/schedule/stepSource";
import type { JobClient } from "../../scheduler/clients/kube";
import { anEvent, settingsFor } from "../helpers/builders";

interface Fakes {
    jobs: JobClient & { created: V1Job[] };
    steps: StepSource & { reads: string[]; failed: [string, string][]; notices: string[] };
}

function fakes(opts: {
    read?: (uuid: string) => Promise<StepInput | undefined>;
    fail?: () => Promise<void>;
    create?: () => Promise<"created" | "exists">;
    template?: boolean;
}): Fakes {
    const created: V1Job[] = [];
    const reads: string[] = [];
    const failed: [string, string][] = [];
    const notices: string[] = [];
    return {
        jobs: {
            server: "https://k8s.example",
            created,
            async createJob(job) {
                created.push(job);
                return (opts.create ?? (async () => "created"))();
            },
            async deleteJob() {
                return "deleted";
            },
            async readPodTemplate() {
                return opts.template ? { containers: [{ name: "t", image: "alpine:latest" }] } : undefined;
            },
        },
        steps: {
            reads,
            failed,
            notices,
            async read(uuid) {
                reads.push(uuid);
                return (opts.read ?? (async () => ({ env: {}, command: "make" })))(uuid);
            },
            async fail(uuid, detail) {
                await (opts.fail ?? (async () => {}))();
                failed.push([uuid, detail]);
            },
            async notify(_uuid, detail) {
                notices.push(detail);
            },
        },
    };
}

const withPlugin =
    (config: unknown, extra: Record<string, string> = {}) =>
    async () => ({
        env: { BUILDKITE_PLUGINS: JSON.stringify([{ [KUBERNETES_PLUGIN]: config }]), ...extra },
        command: "make",
    });

describe("the handler on a queue that takes its pod from the job", () => {
    const settings = settingsFor({ stepShape: "plugin", queues: { dynamic: {}, plain: { stepShape: "none" } } });

    it("reads the job, then creates the Job its step asks for", async () => {
        const f = fakes({ read: withPlugin({}, { BUILDKITE_IMAGE: "alpine:latest" }) });
        const event = anEvent().build();
        const d = await createEventHandler(settings, f.jobs, () => {}, { steps: f.steps })(event);
        assert.strictEqual(d.outcome, "created");
        assert.match(d.reason, /job targets queue dynamic \(image alpine:latest, kubernetes plugin\)/);
        assert.deepStrictEqual(f.steps.reads, [event.detail.job.uuid]);
        assert.ok(f.jobs.created[0].spec!.template.spec!.containers.some((c) => c.image === "alpine:latest"));
    });

    it("a queue that takes nothing from the job reads nothing", async () => {
        const f = fakes({});
        const d = await createEventHandler(settings, f.jobs, () => {}, { steps: f.steps })(
            anEvent().queue("plain").build(),
        );
        assert.strictEqual(d.outcome, "created");
        assert.deepStrictEqual(f.steps.reads, []);
    });

    it("without a Stacks API it creates nothing and says how to give it one (never a worker of the wrong shape)", async () => {
        const f = fakes({});
        await assert.rejects(createEventHandler(settings, f.jobs, () => {})(anEvent().build()), (e: Error) => {
            assert.match(
                e.message,
                /takes its pod from the job \(stepShape plugin\), but this scheduler has no Stacks API/,
            );
            assert.strictEqual(isRetryable(e), false);
            return true;
        });
        assert.strictEqual(f.jobs.created.length, 0);
    });

    it("a read that may pass later is retried (the event stays in its queue); nothing is created", async () => {
        const f = fakes({ read: () => Promise.reject(classifiedError("stacks-api", "StacksApiError", "503", true)) });
        await assert.rejects(
            createEventHandler(settings, f.jobs, () => {}, { steps: f.steps })(anEvent().build()),
            (e) => isRetryable(e),
        );
        assert.strictEqual(f.jobs.created.length, 0);
    });

    it("a job Buildkite no longer has needs no worker", async () => {
        const f = fakes({ read: async () => undefined });
        const d = await createEventHandler(settings, f.jobs, () => {}, { steps: f.steps })(anEvent().build());
        assert.deepStrictEqual([d.outcome, f.jobs.created.length], ["ignored", 0]);
    });

    const bad: [string, () => Promise<StepInput>, RegExp][] = [
        [
            "a bad image",
            async () => ({ env: { BUILDKITE_IMAGE: "a b" }, command: "" }),
            /the step's image "a b" is not a valid image reference/,
        ],
        [
            "a plugin field of the wrong type",
            withPlugin({ sidecars: "nginx" }),
            /the step's plugins.kubernetes.sidecars must be a list of containers/,
        ],
        [
            "a missing PodTemplate",
            withPlugin({ podTemplate: "nope" }),
            /plugins.kubernetes.podTemplate names PodTemplate "nope", which namespace buildkite does not have/,
        ],
    ];
    for (const [name, read, reason] of bad)
        it(`${name}: the Buildkite job fails at once with the field named, nothing is retried`, async () => {
            const f = fakes({ read });
            const lines: string[] = [];
            const d = await createEventHandler(settings, f.jobs, (l) => lines.push(l), { steps: f.steps })(
                anEvent().build(),
            );
            assert.strictEqual(d.outcome, "refused");
            assert.match(d.reason, reason);
            assert.strictEqual(f.steps.failed.length, 1);
            assert.match(f.steps.failed[0][1], /^Scaledkite could not start this job: /);
            assert.match(f.steps.failed[0][1], reason);
            assert.strictEqual(f.jobs.created.length, 0);
            assert.match(lines[0], /"outcome":"refused"/);
        });

    it("a PodTemplate that exists is the step's pod", async () => {
        const f = fakes({ read: withPlugin({ podTemplate: "base" }), template: true });
        const d = await createEventHandler(settings, f.jobs, () => {}, { steps: f.steps })(anEvent().build());
        assert.strictEqual(d.outcome, "created");
        assert.ok(
            f.jobs.created[0].spec!.template.spec!.containers.some(
                (c) => c.name === "t" && c.image === "alpine:latest",
            ),
        );
    });

    it("a refusal that cannot be told to Buildkite yet is retried", async () => {
        const f = fakes({
            read: withPlugin({ sidecars: 1 }),
            fail: () => Promise.reject(classifiedError("stacks-api", "StacksApiError", "503", true)),
        });
        await assert.rejects(
            createEventHandler(settings, f.jobs, () => {}, { steps: f.steps })(anEvent().build()),
            (e) => isRetryable(e),
        );
    });

    it("a Job the API server refuses fails the Buildkite job with the server's reason, not retried", async () => {
        const f = fakes({
            read: withPlugin({
                podSpec: {
                    containers: [{ image: "alpine:latest", volumeMounts: [{ name: "nope", mountPath: "/x" }] }],
                },
            }),
            create: () =>
                Promise.reject(
                    kubernetesError('Job.batch "x" is invalid: volumeMounts[0].name: Not found: "nope"', false, 422),
                ),
        });
        const d = await createEventHandler(settings, f.jobs, () => {}, { steps: f.steps })(anEvent().build());
        assert.strictEqual(d.outcome, "refused");
        assert.match(
            f.steps.failed[0][1],
            /the step's pod was refused by the Kubernetes API server: .*Not found: "nope"/,
        );
    });

    it("a full quota is not a refusal: it is retried", async () => {
        const f = fakes({
            read: withPlugin({}, { BUILDKITE_IMAGE: "alpine:latest" }),
            create: () => Promise.reject(kubernetesError("exceeded quota", true, 403)),
        });
        await assert.rejects(
            createEventHandler(settings, f.jobs, () => {}, { steps: f.steps })(anEvent().build()),
            (e) => isRetryable(e),
        );
        assert.strictEqual(f.steps.failed.length, 0);
    });

    it("fields this version does not know are named on the job's timeline", async () => {
        const f = fakes({ read: withPlugin({ podSpec: {}, shiny: true }) });
        await createEventHandler(settings, f.jobs, () => {}, { steps: f.steps })(anEvent().build());
        assert.deepStrictEqual(f.steps.notices, [
            "Scaledkite ignored kubernetes plugin field(s) it does not know: shiny",
        ]);
    });
});
