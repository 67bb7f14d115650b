import * as assert from "assert";
import { strategicMerge } from "../../scheduler/core/strategicMerge";

describe("strategicMerge", () => {
    const base = {
        restartPolicy: "Never",
        nodeSelector: { pool: "ci" },
        containers: [
            {
                name: "agent",
                image: "a",
                env: [{ name: "A", value: "1" }],
                volumeMounts: [{ name: "build", mountPath: "/b" }],
            },
        ],
        volumes: [{ name: "build", emptyDir: {} }],
        tolerations: [{ key: "x", operator: "Exists" }],
    };
    const cases: [string, Record<string, unknown>, (r: any) => void][] = [
        ["sets a new field", { priorityClassName: "ci" }, (r) => assert.strictEqual(r.priorityClassName, "ci")],
        [
            "merges maps key by key",
            { nodeSelector: { zone: "a" } },
            (r) => assert.deepStrictEqual(r.nodeSelector, { pool: "ci", zone: "a" }),
        ],
        ["deletes with null", { nodeSelector: { pool: null } }, (r) => assert.deepStrictEqual(r.nodeSelector, {})],
        [
            "merges a container by name",
            { containers: [{ name: "agent", image: "b" }] },
            (r) => {
                assert.strictEqual(r.containers.length, 1);
                assert.strictEqual(r.containers[0].image, "b");
                assert.deepStrictEqual(r.containers[0].env, [{ name: "A", value: "1" }], "untouched fields stay");
            },
        ],
        [
            "adds a container",
            { containers: [{ name: "cache", image: "redis" }] },
            (r) =>
                assert.deepStrictEqual(
                    r.containers.map((c: any) => c.name),
                    ["agent", "cache"],
                ),
        ],
        [
            "merges env inside a container by name",
            {
                containers: [
                    {
                        name: "agent",
                        env: [
                            { name: "A", value: "2" },
                            { name: "B", value: "3" },
                        ],
                    },
                ],
            },
            (r) =>
                assert.deepStrictEqual(r.containers[0].env, [
                    { name: "A", value: "2" },
                    { name: "B", value: "3" },
                ]),
        ],
        [
            "merges volume mounts by mount path",
            { containers: [{ name: "agent", volumeMounts: [{ name: "cache", mountPath: "/c" }] }] },
            (r) =>
                assert.deepStrictEqual(
                    r.containers[0].volumeMounts.map((m: any) => m.mountPath),
                    ["/b", "/c"],
                ),
        ],
        [
            "deletes a volume with $patch: delete",
            { volumes: [{ name: "build", $patch: "delete" }] },
            (r) => assert.deepStrictEqual(r.volumes, []),
        ],
        [
            "replaces lists without a merge key",
            { tolerations: [{ key: "y", operator: "Exists" }] },
            (r) => assert.deepStrictEqual(r.tolerations, [{ key: "y", operator: "Exists" }]),
        ],
    ];
    for (const [name, patch, check] of cases) {
        it(name, () => {
            const before = JSON.stringify(base);
            check(strategicMerge(base, patch));
            assert.strictEqual(JSON.stringify(base), before, "the base is not changed");
        });
    }
});
