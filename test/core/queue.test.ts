import * as assert from "assert";
import { matchQueue } from "../../scheduler/core/queue";

describe("matchQueue", () => {
    const served = ["dynamic", "docker-free", "default"];
    const cases: {
        name: string;
        rules: string[];
        served?: string[];
        queue?: string;
        tags?: string[];
        reason?: RegExp;
    }[] = [
        { name: "one queue rule", rules: ["queue=dynamic"], queue: "dynamic", tags: ["queue=dynamic"] },
        {
            name: "queue rule not first",
            rules: ["os=linux", "queue=docker-free"],
            queue: "docker-free",
            tags: ["queue=docker-free", "os=linux"],
        },
        { name: "no rules: the default queue", rules: [], queue: "default", tags: ["queue=default"] },
        {
            name: "only other rules: the default queue",
            rules: ["os=linux"],
            queue: "default",
            tags: ["queue=default", "os=linux"],
        },
        {
            name: "no rules, default not served",
            rules: [],
            served: ["dynamic"],
            reason: /no queue rule \(the "default" queue\)/,
        },
        { name: "a queue not served", rules: ["queue=gpu"], reason: /queue=gpu, which this stack does not serve/ },
        { name: "a wildcard queue rule", rules: ["queue=dock*"], queue: "docker-free", tags: ["queue=docker-free"] },
        {
            name: "two queue rules that cannot both hold",
            rules: ["queue=dynamic", "queue=docker-free"],
            reason: /does not serve/,
        },
        {
            name: "wildcard tag rules are not copied",
            rules: ["queue=dynamic", "arch=*"],
            queue: "dynamic",
            tags: ["queue=dynamic"],
        },
        {
            name: "duplicate rules are copied once",
            rules: ["queue=dynamic", "os=linux", "os=linux"],
            queue: "dynamic",
            tags: ["queue=dynamic", "os=linux"],
        },
        { name: "regex characters in a queue name are literal", rules: ["queue=dyn.mic"], reason: /does not serve/ },
        {
            name: "a rule whose value holds a comma (no agent tag can carry it)",
            rules: ["queue=dynamic", "os=linux,arm64"],
            reason: /job rule "os=linux,arm64" holds a ",", which no buildkite-agent tag can carry/,
        },
        {
            name: "a comma in a wildcard rule is not copied, so it is harmless",
            rules: ["queue=dynamic", "os=linux,*"],
            queue: "dynamic",
            tags: ["queue=dynamic"],
        },
    ];
    for (const c of cases) {
        it(c.name, () => {
            const m = matchQueue(c.rules, c.served ?? served);
            if (c.queue) {
                assert.deepStrictEqual(m, { matched: true, queue: c.queue, tags: c.tags });
            } else {
                assert.strictEqual(m.matched, false);
                assert.match((m as { reason: string }).reason, c.reason!);
            }
        });
    }
});
