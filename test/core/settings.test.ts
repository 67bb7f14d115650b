import * as assert from "assert";
import { queueSettings } from "../../scheduler/core/settings";

describe("queueSettings: a served queue's settings by name, own keys only", () => {
    const settings = { queues: { dynamic: { image: "x" } } } as unknown as Parameters<typeof queueSettings>[0];
    const table: [string, string | undefined, boolean][] = [
        ["a served queue", "dynamic", true],
        ["an unknown queue", "gpu", false],
        ["no annotation", undefined, false],
        ["constructor (Object.prototype's)", "constructor", false],
        ["__proto__", "__proto__", false],
        ["toString", "toString", false],
        ["hasOwnProperty", "hasOwnProperty", false],
    ];
    for (const [name, queue, found] of table) {
        it(`${name}: ${found ? "found" : "none"}`, () =>
            assert.strictEqual(queueSettings(settings, queue) !== undefined, found));
    }
});
