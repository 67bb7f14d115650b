import * as assert from "assert";
import { parseJobEvent } from "../../scheduler/core/event";
import { isInvalidEvent } from "../../scheduler/core/errors";
import { anEvent, sampleEvent } from "../helpers/builders";
import { MALFORMED_EVENTS as malformed } from "../helpers/malformedEvents";

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

    for (const [name, input, message] of malformed) {
        it(`rejects ${name}`, () => {
            assert.throws(() => parseJobEvent(input), (e: unknown) => isInvalidEvent(e) && message.test(e.message) && !e.retryable);
        });
    }
});
