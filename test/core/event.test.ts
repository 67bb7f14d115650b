import * as assert from "assert";
import { foreignOrigin, parseJobEvent } from "../../scheduler/core/event";
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
        const e = anEvent()
            .with((x) => delete x.detail.job.agent_query_rules)
            .build();
        assert.deepStrictEqual(parseJobEvent(e).job.agentQueryRules, []);
    });

    for (const [name, input, message] of malformed) {
        it(`rejects ${name}`, () => {
            assert.throws(
                () => parseJobEvent(input),
                (e: unknown) => isInvalidEvent(e) && message.test(e.message) && !e.retryable,
            );
        });
    }
});

describe("foreignOrigin: only the stack's account and Buildkite event source", () => {
    const partner = { account: "123456789012", eventBusName: "aws.partner/buildkite.com/my-org/0106-187c-12cd4fe" };
    const custom = { account: "123456789012", eventBusName: "ci-events" };
    const table: [string, { source?: string; account?: string }, typeof partner, RegExp | undefined][] = [
        [
            "the stack's own partner source and account",
            { source: partner.eventBusName, account: "123456789012" },
            partner,
            undefined,
        ],
        [
            "another account",
            { source: partner.eventBusName, account: "999999999999" },
            partner,
            /event is from account "999999999999", not this stack's 123456789012/,
        ],
        ["no account", { source: partner.eventBusName }, partner, /event is from account null/],
        [
            "another organization's source",
            { source: "aws.partner/buildkite.com/other/1", account: "123456789012" },
            partner,
            /is not the stack's event source aws.partner\/buildkite.com\/my-org/,
        ],
        [
            "a custom bus: any Buildkite partner source",
            { source: "aws.partner/buildkite.com/my-org/1", account: "123456789012" },
            custom,
            undefined,
        ],
        [
            "a custom bus: a source that is not Buildkite's",
            { source: "my.app", account: "123456789012" },
            custom,
            /event source "my.app" is not a Buildkite partner event source/,
        ],
    ];
    for (const [name, event, origin, message] of table) {
        it(name, () => {
            const why = foreignOrigin(event, origin);
            if (message) assert.match(why ?? "", message);
            else assert.strictEqual(why, undefined);
        });
    }
    it("reads the envelope's source and account", () => {
        const e = parseJobEvent(sampleEvent());
        assert.deepStrictEqual(
            [e.source, e.account],
            ["aws.partner/buildkite.com/my-org/0106-187c-12cd4fe", "123456789012"],
        );
    });
});
