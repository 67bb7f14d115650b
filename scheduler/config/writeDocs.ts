/**
 * `npm run docs`: writes the README's configuration table and Pulumi.yaml's `config:` block from the
 * declaration (declaration.ts). test/config/declaration.test.ts fails when either differs from it.
 */
import * as fs from "fs";
import * as path from "path";
import { dump } from "js-yaml";
import { renderPulumiConfig, renderReadmeTable } from "./declaration";

const ROOT = path.resolve(__dirname, "..", "..");
export const TABLE_BEGIN = "<!-- settings table: written by npm run docs from scheduler/config/declaration.ts -->";
export const TABLE_END = "<!-- end of settings table -->";
/** The line of Pulumi.yaml after which the written block starts. */
export const PULUMI_CONFIG_MARK = "# config: written by npm run docs from scheduler/config/declaration.ts";

/** The README with its table between the markers replaced. Pure. */
export function withTable(readme: string): string {
    const begin = readme.indexOf(TABLE_BEGIN);
    const end = readme.indexOf(TABLE_END);
    if (begin < 0 || end < begin) throw new Error(`README.md lacks the markers ${TABLE_BEGIN} … ${TABLE_END}`);
    return `${readme.slice(0, begin + TABLE_BEGIN.length)}\n${renderReadmeTable()}\n${readme.slice(end)}`;
}

/** Pulumi.yaml with its config block (everything after the mark) written anew. Pure. */
export function withPulumiConfig(project: string): string {
    const at = project.indexOf(PULUMI_CONFIG_MARK);
    const head = at < 0 ? `${project.trimEnd()}\n` : project.slice(0, at);
    return `${head}${PULUMI_CONFIG_MARK}\n${dump({ config: renderPulumiConfig() }, { lineWidth: -1 })}`;
}

if (require.main === module) {
    for (const [file, write] of [
        ["README.md", withTable],
        ["Pulumi.yaml", withPulumiConfig],
    ] as const) {
        const p = path.join(ROOT, file);
        fs.writeFileSync(p, write(fs.readFileSync(p, "utf8")));
        console.log(`wrote ${file}`);
    }
}
