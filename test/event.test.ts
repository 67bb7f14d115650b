import * as assert from "assert";
import { parseJobEvent } from "../scheduler/event";
import { isInvalidEvent } from "../scheduler/errors";
import { anEvent, sampleEvent } from "./helpers/builders";

describe("parseJobEvent", () => {
    it("reads the documented Job Scheduled sample", () => {
        const { detailType, job } = parseJobEvent(sampleEvent());
        assert.strictEqual(detailType, "Job Scheduled");
        assert.strictEqual(job.uuid, "9e6c3f19-4fdb-4e8e-b925-28cd7504e17f");
        assert.deepStrictEqual(job.agentQueryRules, ["queue=dynamic"]);
        assert.strictEqual(job.build.number, 123456);
        assert.strictEqual(job.pipeline.slug, "my-pipeline");
        assert.strictEqual(job.organization.slug, "my-org");
    });

    it("accepts the event as JSON text and lowercases the uuid", () => {
        const e = anEvent().uuid("9E6C3F19-4FDB-4E8E-B925-28CD7504E17F").build();
        assert.strictEqual(parseJobEvent(JSON.stringify(e)).job.uuid, "9e6c3f19-4fdb-4e8e-b925-28cd7504e17f");
    });

    it("treats missing agent_query_rules as none", () => {
        const e = anEvent().with((x) => delete x.detail.job.agent_query_rules).build();
        assert.deepStrictEqual(parseJobEvent(e).job.agentQueryRules, []);
    });

    const malformed: [string, unknown, RegExp][] = [
        ["not JSON", "{nope", /not valid JSON/],
        ["null", null, /must be a JSON object, got null/],
        ["an array", [1, 2], /got an array/],
        ["a number", 42, /got number/],
        ["no detail-type", anEvent().with((e) => delete e["detail-type"]).build(), /no "detail-type"/],
        ["empty detail-type", anEvent().detailType("").build(), /no "detail-type"/],
        ["no detail", anEvent().with((e) => delete e.detail).build(), /no "detail" object/],
        ["detail is a string", anEvent().with((e) => (e.detail = "x")).build(), /no "detail" object/],
        ["no job", anEvent().with((e) => delete e.detail.job).build(), /no "job" object/],
        ["no job uuid", anEvent().with((e) => delete e.detail.job.uuid).build(), /uuid must be a UUID, got nothing/],
        ["job uuid not a UUID", anEvent().uuid("../../etc/passwd").build(), /uuid must be a UUID/],
        ["job uuid a number", anEvent().with((e) => (e.detail.job.uuid = 7)).build(), /uuid must be a UUID, got 7/],
        ["no job type", anEvent().with((e) => delete e.detail.job.type).build(), /type must be a non-empty string/],
        ["rules not a list", anEvent().rules("queue=dynamic").build(), /must be a list/],
        ["rule not key=value", anEvent().rules(["queue"]).build(), /not a "key=value" rule/],
        ["rule a number", anEvent().rules([5]).build(), /not a "key=value" rule/],
        ["rule with spaces", anEvent().rules(["queue=a b"]).build(), /not a "key=value" rule/],
        ["build a list", anEvent().with((e) => (e.detail.build = [])).build(), /detail.build must be an object/],
        ["build number text", anEvent().with((e) => (e.detail.build.number = "12")).build(), /build.number must be a whole number/],
        ["pipeline slug a number", anEvent().with((e) => (e.detail.pipeline.slug = 3)).build(), /pipeline.slug must be a string/],
    ];
    for (const [name, input, message] of malformed) {
        it(`rejects ${name}`, () => {
            assert.throws(() => parseJobEvent(input), (e: unknown) => isInvalidEvent(e) && message.test(e.message) && !e.retryable);
        });
    }
});
