/**
 * npm run local-cluster -- up [--stack NAME] | down | status | --help
 *
 * `up` starts the local cluster (or uses the one that runs) and, with --stack, creates what that
 * stack's `pulumi up` would create in it (namespace, Secrets with placeholder values, hooks, RBAC).
 * Ctrl-C while it starts stops what it started. `status` and `down` also handle a cluster that only
 * half started (a process died, or `up` was killed).
 */
import { parseArgs } from "util";
import { down, KUBECONFIG, readState, status, up } from "./cluster";
import { applyStack, loadStack } from "./stack";
import { describeOutcome, repoOf, runPipeline } from "./pipelineRun";
import * as fs from "fs";

/** `pipeline FILE`: 0 every job passed, 1 any did not, 2 the file or the options cannot be used. */
async function pipelineCommand(
    file: string | undefined,
    values: { stack?: string; queue?: string; repo?: string; timeout?: string },
): Promise<number> {
    if (!file) {
        console.error(
            "local-cluster pipeline: name a pipeline file, e.g. npm run local-cluster -- pipeline .buildkite/pipeline.yml",
        );
        return 2;
    }
    let text: string;
    try {
        text = fs.readFileSync(file, "utf8");
    } catch (e) {
        console.error(
            `local-cluster pipeline: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        );
        return 2;
    }
    const timeout = values.timeout === undefined ? 600 : Number(values.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0) {
        console.error(
            `local-cluster pipeline: --timeout must be a number of seconds, got ${JSON.stringify(values.timeout)}`,
        );
        return 2;
    }
    const stackName = values.stack ?? "dev";
    const config = loadStack(stackName);
    const state = await up((s) => console.error(s));
    const run = await runPipeline({
        state,
        config,
        stackName,
        text,
        queue: values.queue,
        repo: values.repo ?? repoOf(file),
        timeoutMs: timeout * 1000,
        log: (l) => console.error(`  ${l}`),
    });
    if ("error" in run) {
        console.error(`local-cluster pipeline: ${file}: ${run.error}`);
        return 2;
    }
    for (const s of run.skipped) console.log(`- ${s}: makes no job here (skipped)`);
    for (const o of run.outcomes) for (const line of describeOutcome(o)) console.log(line);
    const passed = run.outcomes.filter((o) => o.result === "passed").length;
    console.log(`${passed} of ${run.outcomes.length} job(s) passed`);
    return passed === run.outcomes.length ? 0 : 1;
}

const USAGE = [
    "usage: npm run local-cluster -- <command>",
    "  up [--stack NAME]   start the local cluster (or use the one that runs); with --stack, create",
    "                      what `pulumi up` of Pulumi.NAME.yaml creates in it (placeholder secrets)",
    "  down                stop every process the cluster started and remove its state and the node's",
    "  status              which processes run; exit 0 running, 1 partly running, 3 not running",
    "  pipeline FILE [--stack NAME] [--queue Q] [--repo DIR] [--timeout SECONDS]",
    "                      run a Buildkite pipeline file's jobs on the real node as Scaledkite would",
    "                      (stack dev by default; {{.queue}} and queue-less steps get Q, by default the",
    "                      stack's first queue that takes its pod from the job; DIR, by default the git",
    "                      repository the file is in, is checked out in each job); exit 0 when every",
    "                      job passed, 1 when any did not, 2 for a file it cannot read",
].join("\n");

async function main(argv: string[]): Promise<number> {
    const { positionals, values } = parseArgs({
        args: argv,
        allowPositionals: true,
        options: {
            stack: { type: "string" },
            queue: { type: "string" },
            repo: { type: "string" },
            timeout: { type: "string" },
            help: { type: "boolean", short: "h" },
        },
    });
    const command = positionals[0];
    if (values.help) {
        console.log(USAGE);
        return 0;
    }
    switch (command) {
        case "up": {
            const config = values.stack === undefined ? undefined : loadStack(values.stack);
            let interrupted = false;
            const stop = (signal: string) => {
                if (interrupted) return;
                interrupted = true;
                console.error(`local-cluster: ${signal}: stopping what was started`);
                void down(() => {}).finally(() => process.exit(130));
            };
            const wasRunning = status().running;
            if (!wasRunning) {
                process.once("SIGINT", () => stop("SIGINT"));
                process.once("SIGTERM", () => stop("SIGTERM"));
            }
            let state;
            try {
                state = await up();
            } catch (e) {
                // Stopping what was started makes up() fail; the stop exits 130 once it is done, and a
                // loaded machine must not let this failure's exit 1 win that race.
                if (interrupted) return new Promise<number>(() => {});
                throw e;
            }
            if (config) {
                const k8s: typeof import("@kubernetes/client-node") = require("@kubernetes/client-node");
                const kc = new k8s.KubeConfig();
                kc.loadFromFile(state.kubeconfig);
                const made = await applyStack(kc, config, {});
                console.error(
                    `stack ${values.stack}: namespace ${config.namespace} ready (${made.length ? `created ${made.join(", ")}` : "all there already"}; secrets are placeholders)`,
                );
            }
            console.log(state.kubeconfig);
            return 0;
        }
        case "down":
            await down();
            return 0;
        case "pipeline":
            return pipelineCommand(positionals[1], values);
        case "status": {
            const s = status();
            if (!s.state) {
                console.log("local cluster: not running");
                return 3;
            }
            const where = s.state.server ? ` at ${s.state.server}` : " (its API server never became ready)";
            console.log(
                `local cluster: ${s.running ? "running" : "partly running: run `npm run local-cluster -- down`, then up"}${where}`,
            );
            for (const p of s.processes)
                console.log(`  ${p.name.padEnd(24)} pid ${String(p.pid).padEnd(8)} ${p.alive ? "running" : "stopped"}`);
            if (s.state.node) console.log(`  real node: ${s.state.node}`);
            if (s.state.server) console.log(`  kubeconfig: ${KUBECONFIG}`);
            return s.running ? 0 : 1;
        }
        default:
            console.error(
                command === undefined ? USAGE : `local-cluster: unknown command ${JSON.stringify(command)}\n${USAGE}`,
            );
            return 2;
    }
}

main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
        const message = (e as Error).message.split("\n")[0];
        console.error(
            `local-cluster: ${message}${readState() && !status().running ? " (the cluster is partly running: npm run local-cluster -- down)" : ""}`,
        );
        process.exit((e as { code?: string }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" ? 2 : 1);
    },
);
