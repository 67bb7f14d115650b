/**
 * At-least-once delivery against the real API server: duplicates make one Job; a full quota is a
 * failure worth retrying, and the retried event succeeds once room frees.
 */
import * as assert from "assert";
import { type ClusterState } from "../../k8s/local/cluster";
import { ANNOTATION_RUN_SECONDS, UNSCHEDULABLE_LABEL } from "../../k8s/local/podRunner";
import { isRetryable, type KubernetesError } from "../../scheduler/core/errors";
import { createEventHandler, type Decision } from "../../scheduler/schedule/lambda";
import { anEvent } from "../helpers/builders";
import { creatorAs, deleteNamespace, deployStack } from "../helpers/deploy";
import { adminConfig, eventually, k8sClient, localCluster } from "../helpers/localCluster";

describe("event deliveries on a real API server", function () {
    let state: ClusterState;
    before(async function () {
        state = await localCluster(this);
    });
    after(async function () {
        if (state)
            for (const ns of ["dup-workers", "quota-workers", "cancel-workers"]) await deleteNamespace(state, ns);
    });

    it("makes exactly one Job from 50 concurrent deliveries of one event", async function () {
        this.timeout(60_000);
        const stack = await deployStack(state, "dup-workers");
        const event = anEvent().build();
        // Each delivery as its own Lambda container would handle it: its own handler and client.
        const decisions = await Promise.all(
            Array.from({ length: 50 }, () => createEventHandler(stack.settings, creatorAs(state), () => {})(event)),
        );
        const outcomes = decisions.map((d: Decision) => d.outcome);
        assert.strictEqual(outcomes.filter((o) => o === "created").length, 1, outcomes.join(","));
        assert.strictEqual(outcomes.filter((o) => o === "exists").length, 49);
        const jobs = await adminConfig(state)
            .makeApiClient(k8sClient().BatchV1Api)
            .listNamespacedJob({
                namespace: stack.namespace,
                labelSelector: `buildkite.com/job-uuid=${event.detail.job.uuid}`,
            });
        assert.strictEqual(jobs.items.length, 1);
    });

    it("reports a full quota as worth retrying, and schedules every waiting event once room frees", async function () {
        this.timeout(150_000);
        // scaledkite:maxConcurrentJobs becomes the namespace's ResourceQuota (applied from the program's declaration).
        const stack = await deployStack(
            state,
            "quota-workers",
            {
                ttlSecondsAfterFinished: 0,
                annotations: { [ANNOTATION_RUN_SECONDS]: "3" },
                maxConcurrentJobs: 1,
            },
            "stand-in",
        );
        const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
        // The quota controller fills in status.hard before admission enforces it.
        for (let i = 0; i < 100; i++) {
            const q = await core.readNamespacedResourceQuota({
                name: "scaledkite-spend-caps",
                namespace: stack.namespace,
            });
            if (q.status?.hard) break;
            await new Promise((r) => setTimeout(r, 100));
        }
        const logs: string[] = [];
        const handle = createEventHandler(stack.settings, creatorAs(state), (l) => logs.push(l));
        assert.strictEqual((await handle(anEvent().build())).outcome, "created");

        const waiting = anEvent().build();
        const refused = await handle(waiting).then(
            () => undefined,
            (e: KubernetesError) => e,
        );
        assert.ok(refused, "the second Job is refused while the first runs");
        assert.strictEqual(refused!.status, 403);
        assert.ok(isRetryable(refused), "a full quota is worth retrying");
        assert.match(refused!.message, /quota is full .*exceeded quota/);
        assert.match(logs[logs.length - 1], /"outcome":"failed".*"retryable":true/);

        // Three events wait; each is retried (as EventBridge / Lambda do, here every half second) until
        // it goes through: with room for one worker at a time, all three run in turn and none is lost.
        const queue = [waiting, anEvent().build(), anEvent().build()];
        const scheduled = new Set<string>();
        const deadline = Date.now() + 100_000;
        while (scheduled.size < queue.length && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 500));
            for (const e of queue) {
                if (scheduled.has(e.detail.job.uuid)) continue;
                const outcome = await handle(e).then(
                    (d) => d.outcome,
                    (err) => (isRetryable(err) ? undefined : Promise.reject(err)),
                );
                if (outcome === "created") scheduled.add(e.detail.job.uuid);
            }
        }
        assert.strictEqual(scheduled.size, queue.length, "every waiting event was scheduled once room freed");
    });

    it("deletes the pending worker of a job cancelled before it started", async function () {
        this.timeout(60_000);
        const stack = await deployStack(state, "cancel-workers", { nodeSelector: { [UNSCHEDULABLE_LABEL]: "true" } });
        const handle = createEventHandler(stack.settings, creatorAs(state), () => {});
        const scheduled = anEvent().build();
        assert.strictEqual((await handle(scheduled)).outcome, "created");
        const name = `buildkite-agent-${scheduled.detail.job.uuid}`;
        const core = adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
        const batch = adminConfig(state).makeApiClient(k8sClient().BatchV1Api);
        const pod = await eventually("the worker pod to wait, unschedulable", async () => {
            const pods = await core.listNamespacedPod({
                namespace: stack.namespace,
                labelSelector: `job-name=${name}`,
            });
            const p = pods.items[0];
            return p?.status?.conditions?.some((c) => c.type === "PodScheduled" && c.reason === "Unschedulable")
                ? p
                : undefined;
        });
        assert.strictEqual(pod.status!.phase, "Pending");

        const finished = JSON.parse(JSON.stringify(scheduled));
        finished["detail-type"] = "Job Finished";
        finished.detail.job.started_at = null;
        finished.detail.job.signal_reason = "cancel";
        const d = await handle(finished);
        assert.strictEqual(d.outcome, "cancelled", d.reason);
        await eventually("the Job and its pod to go", async () => {
            const jobs = await batch.listNamespacedJob({ namespace: stack.namespace });
            const pods = await core.listNamespacedPod({ namespace: stack.namespace });
            return jobs.items.length === 0 && pods.items.length === 0 ? true : undefined;
        });
        assert.strictEqual((await handle(finished)).outcome, "ignored", "a second delivery finds nothing to cancel");
    });
});
