/**
 * The layout's rule, checked from the source: which side of the closure-serialization boundary a file
 * is on follows from where it is. program.test.ts checks the same boundary from what the serialized
 * Lambdas actually contain; this test names the file and the import that broke it.
 */
import * as assert from "assert";
import * as fs from "fs";
import * as path from "path";
import { PROJECT_ROOT } from "./helpers/pulumiProgram";

const SCHEDULER = path.join(PROJECT_ROOT, "scheduler");
/** Feature folders: component.ts runs at `pulumi up`, every other file runs inside the Lambda. */
const FEATURES = ["schedule", "sweep", "tokenSync"];
/** Folders of code that runs only at `pulumi up` or on a person's machine. */
const DEPLOY_TIME = ["aws", "config", "cli"];

function sourceFiles(dir: string): string[] {
    return fs
        .readdirSync(dir, { withFileTypes: true })
        .flatMap((e) =>
            e.isDirectory()
                ? sourceFiles(path.join(dir, e.name))
                : e.name.endsWith(".ts")
                  ? [path.join(dir, e.name)]
                  : [],
        );
}

/** The modules a file loads at run time: its imports that are not `import type`, and its require()s. */
export function valueImports(source: string): string[] {
    const imports = [...source.matchAll(/^import\s+(?!type\s)[^;]*?from\s+"([^"]+)"/gms)].map((m) => m[1]);
    const requires = [...source.matchAll(/\brequire\("([^"]+)"\)/g)].map((m) => m[1]);
    return [...imports, ...requires];
}

/** Every module a file names: its imports, `import type` and `export … from` included, and its require()s. */
export function allImports(source: string): string[] {
    const imports = [...source.matchAll(/^(?:import|export)\s[^;]*?from\s+"([^"]+)"/gms)].map((m) => m[1]);
    const requires = [...source.matchAll(/\brequire\("([^"]+)"\)/g)].map((m) => m[1]);
    return [...imports, ...requires];
}

/** The layers, lowest first: a file may name its own layer and those below it, never one above. */
const LAYERS: Record<string, string[]> = { core: ["core"], clients: ["core", "clients"] };

/** Where a file is: "core", "clients", "lambda" (a feature's Lambda code), "component", or a deploy-time folder. */
function sideOf(file: string): string {
    const [folder, name] = path.relative(SCHEDULER, file).split(path.sep);
    if (FEATURES.includes(folder)) return name === "component.ts" ? "component" : "lambda";
    return folder;
}

const runtimeFiles = sourceFiles(SCHEDULER).filter((f) => ["core", "clients", "lambda"].includes(sideOf(f)));

describe("layout: the closure-serialization boundary, by folder", () => {
    it("finds the folders it checks", () => {
        for (const f of [
            ...FEATURES.flatMap((x) => [`${x}/component.ts`, `${x}/lambda.ts`]),
            "core/manifest.ts",
            "clients/kube.ts",
        ]) {
            assert.ok(fs.existsSync(path.join(SCHEDULER, f)), f);
        }
        assert.ok(runtimeFiles.length >= 20, `${runtimeFiles.length} files of Lambda code`);
    });

    it("reads `import type` as no import and a require() as one", () => {
        assert.deepStrictEqual(
            valueImports('import type { A } from "@pulumi/pulumi";\nimport { b } from "./b";\nconst c = require("c");'),
            ["./b", "c"],
        );
    });

    for (const file of runtimeFiles) {
        const name = path.relative(PROJECT_ROOT, file);
        it(`${name} loads no deploy-time code`, () => {
            for (const spec of valueImports(fs.readFileSync(file, "utf8"))) {
                assert.ok(
                    !spec.startsWith("@pulumi/"),
                    `${name} imports ${spec}: Pulumi's SDK belongs in a component.ts`,
                );
                if (!spec.startsWith(".")) continue;
                const target = path.resolve(path.dirname(file), spec) + ".ts";
                const side = sideOf(target);
                assert.ok(
                    !DEPLOY_TIME.includes(side) && side !== "component",
                    `${name} imports ${spec} (${side}): code the Lambda runs may not load deploy-time code`,
                );
                if (sideOf(file) === "core")
                    assert.strictEqual(side, "core", `${name} imports ${spec}: the pure core imports only itself`);
            }
        });
    }

    it("reads `import type` and `export … from` as naming a module", () => {
        assert.deepStrictEqual(
            allImports(
                'import type { A } from "../clients/a";\nexport { b } from "./b";\nimport {\n  c,\n} from "./c";',
            ),
            ["../clients/a", "./b", "./c"],
        );
    });

    for (const file of sourceFiles(SCHEDULER).filter((f) => sideOf(f) in LAYERS)) {
        const name = path.relative(PROJECT_ROOT, file);
        it(`${name} names no higher layer, not even for a type`, () => {
            for (const spec of allImports(fs.readFileSync(file, "utf8")).filter((s) => s.startsWith("."))) {
                const side = sideOf(path.resolve(path.dirname(file), spec) + ".ts");
                assert.ok(
                    LAYERS[sideOf(file)].includes(side),
                    `${name} names ${spec} (${side}): ${sideOf(file)} may name only ${LAYERS[sideOf(file)].join(" and ")}`,
                );
            }
        });
    }

    it("the pure core does no I/O: no Node built-in and no package is loaded", () => {
        for (const file of runtimeFiles.filter((f) => sideOf(f) === "core")) {
            const outside = valueImports(fs.readFileSync(file, "utf8")).filter((s) => !s.startsWith("."));
            assert.deepStrictEqual(outside, [], `${path.relative(PROJECT_ROOT, file)} loads ${outside.join(", ")}`);
        }
    });

    it("only deploy-time code loads Pulumi's SDK", () => {
        const pulumiUsers = sourceFiles(SCHEDULER).filter((f) =>
            valueImports(fs.readFileSync(f, "utf8")).some((s) => s.startsWith("@pulumi/")),
        );
        for (const f of pulumiUsers)
            assert.ok([...DEPLOY_TIME, "component"].includes(sideOf(f)), path.relative(PROJECT_ROOT, f));
    });
});
