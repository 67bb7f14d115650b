/** How a podSpec container's `command` and `args` become the step's command (agent-stack-k8s's interposers). Pure. */
import type { Interposer } from "./step";

/**
 * The step's command as each interposer makes it from a podSpec container's `command` and `args`
 * (agent-stack-k8s v0.47.0 internal/controller/config/command_params.go): `buildkite` (the default)
 * takes each entry of `command` as one line of a script, like a step's `commands:`, with `args`
 * appended to the last line as quoted words; `vector` takes `command` then `args` as one program and
 * its arguments, each quoted for the shell; `legacy` joins them all with spaces, unquoted. A container
 * without `command` runs the step's own command (its `args` are not used). Pure.
 */
export function interposedCommand(
    interposer: Interposer,
    command: string[] | undefined,
    args: string[] | undefined,
    stepCommand: string,
): string {
    const c = command ?? [];
    const a = args ?? [];
    if (c.length === 0) return stepCommand;
    switch (interposer) {
        case "vector":
            return shellJoin([...c, ...a]);
        case "legacy":
            return [...c, ...a].join(" ");
        default:
            return c.join("\n") + (a.length ? ` ${shellJoin(a)}` : "");
    }
}

/**
 * Words for sh: a word with blanks is single-quoted; otherwise each character the shell treats
 * specially is escaped with a backslash; an empty word gives nothing (as agent-stack-k8s's quoting).
 * Pure.
 */
export function shellJoin(words: string[]): string {
    return words.map(shellWord).join(" ");
}

function shellWord(word: string): string {
    if (word === "") return "";
    if (/[\s]/.test(word)) return `'${word.replace(/'/g, `'\\''`)}'`;
    return word.replace(/[\\'"`${[|&;<>()*?!]|^~/g, (ch) => `\\${ch}`);
}
