/** Malformed events, each with the clear error it must get. Shared by the unit and integration tests. */
import { anEvent } from "./builders";

export const MALFORMED_EVENTS: [string, unknown, RegExp][] = [
    ["not JSON", "{nope", /not valid JSON/],
    ["empty text", "", /not valid JSON/],
    ["null", null, /must be a JSON object, got null/],
    ["an array", [1, 2], /got an array/],
    ["a number", 42, /got number/],
    ["a boolean", true, /got boolean/],
    [
        "no detail-type",
        anEvent()
            .with((e) => delete e["detail-type"])
            .build(),
        /no "detail-type"/,
    ],
    ["empty detail-type", anEvent().detailType("").build(), /no "detail-type"/],
    ["detail-type a number", anEvent().detailType(3).build(), /no "detail-type"/],
    [
        "no detail",
        anEvent()
            .with((e) => delete e.detail)
            .build(),
        /no "detail" object/,
    ],
    [
        "detail is a string",
        anEvent()
            .with((e) => (e.detail = "x"))
            .build(),
        /no "detail" object/,
    ],
    [
        "detail is a list",
        anEvent()
            .with((e) => (e.detail = []))
            .build(),
        /no "detail" object/,
    ],
    [
        "no job",
        anEvent()
            .with((e) => delete e.detail.job)
            .build(),
        /no "job" object/,
    ],
    [
        "job is null",
        anEvent()
            .with((e) => (e.detail.job = null))
            .build(),
        /no "job" object/,
    ],
    [
        "no job uuid",
        anEvent()
            .with((e) => delete e.detail.job.uuid)
            .build(),
        /uuid must be a UUID, got nothing/,
    ],
    ["job uuid not a UUID", anEvent().uuid("../../etc/passwd").build(), /uuid must be a UUID/],
    ["job uuid too short", anEvent().uuid("9e6c3f19-4fdb-4e8e-b925").build(), /uuid must be a UUID/],
    ["job uuid with a suffix", anEvent().uuid("9e6c3f19-4fdb-4e8e-b925-28cd7504e17f-x").build(), /uuid must be a UUID/],
    [
        "job uuid a number",
        anEvent()
            .with((e) => (e.detail.job.uuid = 7))
            .build(),
        /uuid must be a UUID, got 7/,
    ],
    [
        "no job type",
        anEvent()
            .with((e) => delete e.detail.job.type)
            .build(),
        /type must be a non-empty string/,
    ],
    ["job type empty", anEvent().type("").build(), /type must be a non-empty string/],
    ["rules not a list", anEvent().rules("queue=dynamic").build(), /must be a list/],
    ["rules an object", anEvent().rules({ queue: "dynamic" }).build(), /must be a list/],
    ["rule not key=value", anEvent().rules(["queue"]).build(), /not a "key=value" rule/],
    ["rule with no key", anEvent().rules(["=dynamic"]).build(), /not a "key=value" rule/],
    ["rule a number", anEvent().rules([5]).build(), /not a "key=value" rule/],
    ["rule null", anEvent().rules([null]).build(), /not a "key=value" rule/],
    ["rule with spaces", anEvent().rules(["queue=a b"]).build(), /not a "key=value" rule/],
    [
        "rule with a NUL byte",
        anEvent().rules(["queue=dynamic", "os=linux\u0000x"]).build(),
        /not a "key=value" rule \(no spaces or control characters\)/,
    ],
    ["rule with a newline", anEvent().rules(["os=linux\nx"]).build(), /not a "key=value" rule/],
    [
        "rules larger than an agent's tags may be",
        anEvent()
            .rules(["queue=dynamic", ...Array.from({ length: 200 }, (_, i) => `k${i}=${"v".repeat(100)}`)])
            .build(),
        /agent_query_rules hold \d+ characters, more than the 16384 an agent's tags may/,
    ],
    [
        "build a list",
        anEvent()
            .with((e) => (e.detail.build = []))
            .build(),
        /detail.build must be an object/,
    ],
    [
        "build number text",
        anEvent()
            .with((e) => (e.detail.build.number = "12"))
            .build(),
        /build.number must be a whole number/,
    ],
    [
        "build number 1e21 (an integer that String() writes as 1e+21)",
        anEvent()
            .with((e) => (e.detail.build.number = 1e21))
            .build(),
        /build.number must be a whole number from 0 to 9007199254740991, got 1e\+21/,
    ],
    [
        "build number negative",
        anEvent()
            .with((e) => (e.detail.build.number = -1))
            .build(),
        /build.number must be a whole number/,
    ],
    [
        "build branch a number",
        anEvent()
            .with((e) => (e.detail.build.branch = 1))
            .build(),
        /build.branch must be a string/,
    ],
    [
        "pipeline slug a number",
        anEvent()
            .with((e) => (e.detail.pipeline.slug = 3))
            .build(),
        /pipeline.slug must be a string/,
    ],
    [
        "organization a string",
        anEvent()
            .with((e) => (e.detail.organization = "my-org"))
            .build(),
        /detail.organization must be an object/,
    ],
    [
        "job label an object",
        anEvent()
            .with((e) => (e.detail.job.label = {}))
            .build(),
        /job.label must be a string/,
    ],
];
