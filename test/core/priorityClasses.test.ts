/** A job's Buildkite priority as a PriorityClass, and on its worker Job (annotation and pod spec). Table-driven. */
import * as assert from "assert";
import { priorityClassFor } from "../../scheduler/core/priorityClasses";
import { eventFromStacksJob } from "../../scheduler/sweep/lambda";
import { decide } from "../../scheduler/schedule/lambda";
import { newUuid, settingsFor } from "../helpers/builders";

describe("priorityClassFor", () => {
    const classes = { "-100": "ci-low", "0": "ci", "10": "ci-urgent" };
    const table: [string, Record<string, string>, number | undefined, string | undefined][] = [
        ["the default priority 0", classes, 0, "ci"],
        ["unknown (an EventBridge event): as 0", classes, undefined, "ci"],
        ["between thresholds: the highest at or below", classes, 9, "ci"],
        ["at a threshold", classes, 10, "ci-urgent"],
        ["far above", classes, 1000, "ci-urgent"],
        ["below 0, above -100", classes, -1, "ci-low"],
        ["below every threshold: the queue's own", classes, -101, undefined],
        ["no classes", {}, 5, undefined],
    ];
    for (const [name, c, priority, want] of table)
        it(name, () => assert.strictEqual(priorityClassFor(c, priority), want));
});

describe("a job's priority on its worker", () => {
    const job = (priority: number) =>
        eventFromStacksJob({
            id: newUuid(),
            priority,
            agent_query_rules: ["queue=dynamic"],
            scheduled_at: new Date().toISOString(),
        });
    const manifest = (settings: ReturnType<typeof settingsFor>, event: object) => {
        const v = decide(settings, event);
        assert.strictEqual(v.outcome, "schedule");
        return (
            v as {
                manifest: {
                    metadata: { annotations: Record<string, string> };
                    spec: { template: { spec: { priorityClassName?: string } } };
                };
            }
        ).manifest;
    };

    it("the Stacks API's priority: annotated as agent-stack-k8s does, and the class it maps to", () => {
        const m = manifest(settingsFor({ priorityClasses: { "0": "ci", "10": "ci-urgent" } }), job(20));
        assert.strictEqual(m.metadata.annotations["buildkite.com/job-priority"], "20");
        assert.strictEqual(m.spec.template.spec.priorityClassName, "ci-urgent");
    });

    it("the class replaces the one a queue's patch sets", () => {
        const m = manifest(
            settingsFor({ priorityClasses: { "10": "ci-urgent" }, podSpecPatch: { priorityClassName: "ci-queue" } }),
            job(10),
        );
        assert.strictEqual(m.spec.template.spec.priorityClassName, "ci-urgent");
        const low = manifest(
            settingsFor({ priorityClasses: { "10": "ci-urgent" }, podSpecPatch: { priorityClassName: "ci-queue" } }),
            job(1),
        );
        assert.strictEqual(
            low.spec.template.spec.priorityClassName,
            "ci-queue",
            "below every threshold: the queue's own",
        );
    });

    it("no priorityClasses: no class, the annotation still", () => {
        const m = manifest(settingsFor(), job(3));
        assert.strictEqual(m.spec.template.spec.priorityClassName, undefined);
        assert.strictEqual(m.metadata.annotations["buildkite.com/job-priority"], "3");
    });

    it("a config that is not a map from priority to class name says so", () => {
        assert.throws(
            () => settingsFor({ priorityClasses: { high: "ci" } }),
            /priorityClasses.high must be a map from the lowest job priority to a PriorityClass name/,
        );
        assert.throws(
            () => settingsFor({ priorityClasses: { "1": "CI_Urgent" } }),
            /priorityClasses.*not a PriorityClass name/,
        );
    });
});
