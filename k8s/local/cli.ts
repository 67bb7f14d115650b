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

const USAGE = [
    "usage: npm run local-cluster -- <command>",
    "  up [--stack NAME]   start the local cluster (or use the one that runs); with --stack, create",
    "                      what `pulumi up` of Pulumi.NAME.yaml creates in it (placeholder secrets)",
    "  down                stop every process the cluster started and remove its state and the node's",
    "  status              which processes run; exit 0 running, 1 partly running, 3 not running",
].join("\n");

async function main(argv: string[]): Promise<number> {
    const { positionals, values } = parseArgs({
        args: argv,
        allowPositionals: true,
        options: { stack: { type: "string" }, help: { type: "boolean", short: "h" } },
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
            const state = await up();
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
