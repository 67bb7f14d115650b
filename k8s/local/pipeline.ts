/**
 * A Buildkite pipeline file turned into the jobs Buildkite would create from it, for running it on
 * the local cluster (`npm run local-cluster -- pipeline FILE`): each command step becomes one job per
 * `parallelism`, with the environment its agent would get (BUILDKITE_COMMAND, BUILDKITE_PLUGINS with
 * each plugin's resolved source, BUILDKITE_IMAGE, the step's and the pipeline's env) and the agent
 * query rules from `agents`. `wait`, `block`, `input` and `trigger` steps make no job; a `group`'s
 * steps are its own. `{{.queue}}` (agent-stack-k8s's fixtures' placeholder) becomes the queue. Pure.
 */
import * as crypto from "crypto";
import * as yaml from "js-yaml";

/** One job as Buildkite would schedule it. */
export interface PipelineJob {
    uuid: string;
    label: string;
    stepKey?: string;
    agentQueryRules: string[];
    queue: string;
    command: string;
    env: Record<string, string>;
}

export type PipelineResult = { jobs: PipelineJob[]; skipped: string[] } | { error: string };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * A plugin's source as Buildkite resolves a step's plugin name: `name` is
 * github.com/buildkite-plugins/name-buildkite-plugin, `org/name` github.com/org/name-buildkite-plugin,
 * a `#ref` is kept, and a URL or a path with a host is taken as it is.
 */
export function pluginSource(name: string): string {
    const [path, ref] = name.split("#", 2);
    const suffix = ref === undefined ? "" : `#${ref}`;
    if (/^[a-z+]+:\/\//i.test(path) || path.split("/")[0].includes(".")) return name;
    const parts = path.split("/");
    const [org, repo] = parts.length === 1 ? ["buildkite-plugins", parts[0]] : [parts[0], parts[1]];
    const full = repo.endsWith("-buildkite-plugin") ? repo : `${repo}-buildkite-plugin`;
    return `github.com/${org}/${full}${suffix}`;
}

function plugins(value: unknown): Obj[] | string {
    if (value === undefined || value === null) return [];
    const entries: [string, unknown][] = [];
    if (Array.isArray(value)) {
        for (const p of value) {
            if (typeof p === "string") entries.push([p, null]);
            else if (isObj(p) && Object.keys(p).length === 1) entries.push(Object.entries(p)[0]);
            else return `a plugin must be a name or one name with its config, got ${JSON.stringify(p)}`;
        }
    } else if (isObj(value)) entries.push(...Object.entries(value));
    else return `plugins must be a list or a map`;
    return entries.map(([name, config]) => ({ [pluginSource(name)]: config ?? null }));
}

function stringEnv(value: unknown, where: string): Record<string, string> | string {
    if (value === undefined || value === null) return {};
    if (!isObj(value)) return `${where}env must be a map`;
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, typeof v === "string" ? v : String(v)]));
}

function agentRules(value: unknown): string[] {
    if (Array.isArray(value)) return value.map(String);
    if (isObj(value)) return Object.entries(value).map(([k, v]) => `${k}=${String(v)}`);
    return [];
}

/**
 * Buildkite's interpolation of a pipeline's text at upload: `$$` and `\$` are a literal `$`;
 * `$NAME`, `${NAME}` and `${NAME:-default}` take the value from `env` (the pipeline's own `env:` and
 * the build's variables), and a name it does not know is empty, as Buildkite does. Pure.
 */
export function interpolate(text: string, env: Record<string, string>): string {
    return text.replace(
        /\$\$|\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
        (all, braced?: string, fallback?: string, bare?: string) => {
            if (all === "$$" || all === "\\$") return "$";
            const name = (braced ?? bare)!;
            const value = Object.prototype.hasOwnProperty.call(env, name) ? env[name] : undefined;
            return value !== undefined && value !== "" ? value : (fallback ?? "");
        },
    );
}

/** The jobs of a pipeline file's text; `queue` fills `{{.queue}}` and is the queue of steps that name none. */
export function pipelineJobs(
    text: string,
    queue: string,
    uuid: () => string = crypto.randomUUID,
    buildEnv: Record<string, string> = {},
): PipelineResult {
    let doc: unknown;
    try {
        const filled = text.replace(/\{\{\s*\.queue\s*\}\}/g, queue);
        // The pipeline's own env is known before the rest is interpolated (Buildkite reads it first).
        const raw = yaml.load(filled);
        const ownEnv = isObj(raw) && isObj(raw.env) ? (stringEnv(raw.env, "") as Record<string, string>) : {};
        doc = yaml.load(interpolate(filled, { ...buildEnv, ...ownEnv }));
    } catch (e) {
        return { error: `not YAML: ${(e as Error).message.split("\n")[0]}` };
    }
    const root: Obj = Array.isArray(doc) ? { steps: doc } : isObj(doc) ? doc : {};
    if (!Array.isArray(root.steps)) return { error: "no `steps:` list" };
    const pipelineEnv = stringEnv(root.env, "the pipeline's ");
    if (typeof pipelineEnv === "string") return { error: pipelineEnv };
    const pipelineAgents = agentRules(root.agents);
    const jobs: PipelineJob[] = [];
    const skipped: string[] = [];

    const visit = (steps: unknown[], at: string): string | undefined => {
        for (const [i, step] of steps.entries()) {
            const where = `${at}[${i}]`;
            if (typeof step === "string") {
                skipped.push(`${where} ${step}`);
                continue;
            }
            if (!isObj(step)) return `${where} is not a step`;
            if (Array.isArray(step.steps) && "group" in step) {
                const e = visit(step.steps, `${where}.steps`);
                if (e) return e;
                continue;
            }
            const kind = ["wait", "block", "input", "trigger"].find((k) => k in step);
            if (kind) {
                skipped.push(`${where} ${kind}`);
                continue;
            }
            const cmd = step.command ?? step.commands ?? step.script;
            const command = Array.isArray(cmd) ? cmd.map(String).join("\n") : cmd === undefined ? "" : String(cmd);
            const stepPlugins = plugins(step.plugins);
            if (typeof stepPlugins === "string") return `${where}: ${stepPlugins}`;
            if (!command && stepPlugins.length === 0) return `${where} has no command and no plugins`;
            const env = stringEnv(step.env, `${where}: the step's `);
            if (typeof env === "string") return env;
            const rules = [...pipelineAgents.filter((r) => !r.startsWith("queue=")), ...agentRules(step.agents)];
            if (!rules.some((r) => r.startsWith("queue="))) {
                const own = pipelineAgents.find((r) => r.startsWith("queue="));
                rules.unshift(own ?? `queue=${queue}`);
            }
            const jobQueue = rules.find((r) => r.startsWith("queue="))!.slice("queue=".length);
            const image = step.image ?? root.image;
            const count = Number(step.parallelism ?? 1);
            if (!Number.isInteger(count) || count < 1 || count > 1000)
                return `${where}.parallelism must be a whole number from 1 to 1000`;
            const label = String(step.label ?? step.name ?? command.split("\n")[0] ?? "step");
            const artifacts = Array.isArray(step.artifact_paths)
                ? step.artifact_paths.map(String).join(";")
                : typeof step.artifact_paths === "string"
                  ? step.artifact_paths
                  : "";
            for (let n = 0; n < count; n++) {
                jobs.push({
                    uuid: uuid(),
                    label: count > 1 ? `${label} (${n + 1}/${count})` : label,
                    ...(typeof step.key === "string" ? { stepKey: step.key } : {}),
                    agentQueryRules: rules,
                    queue: jobQueue,
                    command,
                    env: {
                        ...pipelineEnv,
                        ...env,
                        BUILDKITE_COMMAND: command,
                        BUILDKITE_LABEL: label,
                        BUILDKITE_AGENT_META_DATA_QUEUE: jobQueue,
                        BUILDKITE_PLUGINS: stepPlugins.length ? JSON.stringify(stepPlugins) : "",
                        ...(artifacts ? { BUILDKITE_ARTIFACT_PATHS: artifacts } : {}),
                        ...(typeof image === "string" ? { BUILDKITE_IMAGE: image } : {}),
                        ...(count > 1
                            ? { BUILDKITE_PARALLEL_JOB: String(n), BUILDKITE_PARALLEL_JOB_COUNT: String(count) }
                            : {}),
                    },
                });
            }
        }
        return undefined;
    };
    const error = visit(root.steps, "steps");
    return error ? { error } : { jobs, skipped };
}
