/**
 * The command line: what the Lambda does, for people and scripts.
 *
 *   npm run --silent scaledkite -- render   --event FILE|- [--stack dev | --config FILE]
 *     (a Job Finished event of a job that never started renders the deletion it would make)
 *   npm run --silent scaledkite -- schedule --event FILE|- [--kubeconfig PATH] [--stack dev | --config FILE]
 *   npm run --silent scaledkite -- token    --cluster NAME [--region R] [--profile P] [--stack NAME] [--at RFC3339]
 *   npm run --silent scaledkite -- explain  JOB-UUID|JOB-URL [--kubeconfig PATH] [--namespace NS] [--stack dev | --config FILE]
 *
 * Exit codes: 0 done; 3 the event is not for this stack (reason on stderr); 2 invalid event, config or
 * arguments, or a failure no retry fixes; 1 a failure worth retrying. Errors are one line, no trace.
 */
import * as fs from "fs";
import { parseArgs } from "util";
import { execCredential, signEksToken } from "../clients/eksToken";
import { describeFailure, isConfigError, isRetryable, RETRY_WORDS } from "../core/errors";
import { createEventHandler, decide } from "../schedule/lambda";
import { kubeconfigJobClient, toKubernetesError } from "../clients/kube";
import { explainWorker, jobUuidOf } from "./explain";
import { LABELS, jobName } from "../core/names";
import {
    cliCredentials,
    commandLineSteps,
    type Io,
    kubeconfigPath,
    loadSettings,
    readEvent,
    stackRegion,
    UsageError,
} from "./inputs";

export type { Io } from "./inputs";

export const EXIT = { ok: 0, retry: 1, invalid: 2, ignored: 3 } as const;

/** Each command: its options (all take a value) and its help text. */
const COMMANDS: Record<string, { options: string[]; positional?: string; help: string }> = {
    render: {
        options: ["event", "stack", "config"],
        help: [
            "usage: scaledkite render --event FILE|- [--stack NAME | --config FILE]",
            "  Prints the Job manifest the event would get, as JSON (for a job that finished before it",
            "  started, the deletion it would make). Reads the stack's non-secret settings.",
        ].join("\n"),
    },
    schedule: {
        options: ["event", "stack", "config", "kubeconfig"],
        help: [
            "usage: scaledkite schedule --event FILE|- [--kubeconfig PATH] [--stack NAME | --config FILE]",
            "  Does what the Lambda does, against a kubeconfig's cluster (default $KUBECONFIG, then",
            "  ~/.kube/config): prints created, exists or deleted and the Job. A queue that takes its",
            "  pod from the job reads it through the Stacks API: set BUILDKITE_AGENT_TOKEN (a cluster",
            "  agent token) and, for another endpoint than the stack's, BUILDKITE_AGENT_ENDPOINT.",
        ].join("\n"),
    },
    token: {
        options: ["cluster", "region", "profile", "stack", "at"],
        help: [
            "usage: scaledkite token --cluster NAME [--region R] [--profile P] [--stack NAME] [--at RFC3339]",
            "  Prints an ExecCredential like `aws eks get-token`. Credentials come as the AWS SDK finds them:",
            "  the environment, --profile or AWS_PROFILE (shared files, SSO, assume-role, process), the container",
            "  or instance role. Region: --region, else AWS_REGION, else the stack's aws:region (Pulumi.<stack>.yaml).",
        ].join("\n"),
    },
    explain: {
        options: ["stack", "config", "kubeconfig", "namespace"],
        positional: "JOB-UUID|URL",
        help: [
            "usage: scaledkite explain JOB-UUID|URL [--kubeconfig PATH] [--namespace NS] [--stack NAME | --config FILE]",
            "  What happened to one job's worker: its state, pod, containers, problems, and where its logs are.",
        ].join("\n"),
    },
};

const USAGE = [
    "usage: scaledkite <command> [options]; scaledkite <command> --help for one",
    ...Object.values(COMMANDS).map((c) => `  ${c.help.split("\n")[0].replace(/^usage: /, "")}`),
    "exit codes: 0 done, 3 not for this stack, 2 invalid input or arguments, 1 worth retrying",
].join("\n");

/**
 * A command's flags (`node:util` parseArgs: `--flag value` or `--flag=value`), its one positional if
 * it takes one, and whether --help was asked. Unknown flags are refused with the command's usage.
 */
export function parseCommandArgs(
    command: string,
    args: string[],
): { flags: Record<string, string>; positional?: string; help: boolean } {
    const spec = COMMANDS[command];
    const options = Object.fromEntries([
        ...spec.options.map((o) => [o, { type: "string" as const }]),
        ["help", { type: "boolean" as const, short: "h" }],
    ]);
    let parsed;
    try {
        parsed = parseArgs({ args, options, allowPositionals: spec.positional !== undefined, strict: true });
    } catch (e) {
        const code = (e as { code?: string }).code;
        const flag = /'(-[^']*)'/.exec((e as Error).message)?.[1];
        if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION")
            throw new UsageError(`unknown argument ${JSON.stringify(flag)}; ${spec.help.split("\n")[0]}`);
        if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE")
            throw new UsageError(`${flag?.split(" ")[0] ?? "an option"} needs a value; ${spec.help.split("\n")[0]}`);
        if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL")
            throw new UsageError(
                `unexpected argument ${JSON.stringify(/'([^']*)'/.exec((e as Error).message)?.[1])}; ${spec.help.split("\n")[0]}`,
            );
        throw new UsageError(`${(e as Error).message.split("\n")[0]}; ${spec.help.split("\n")[0]}`);
    }
    const flags: Record<string, string> = {};
    for (const [k, v] of Object.entries(parsed.values)) if (typeof v === "string") flags[k] = v;
    if (parsed.positionals.length > 1)
        throw new UsageError(
            `${command} takes one ${spec.positional}, got ${parsed.positionals.length}; ${spec.help.split("\n")[0]}`,
        );
    return { flags, positional: parsed.positionals[0], help: (parsed.values as Record<string, unknown>).help === true };
}

async function render(flags: Record<string, string>, io: Io): Promise<number> {
    const settings = loadSettings(flags, io);
    const d = decide(settings, readEvent(flags, io));
    if (d.outcome === "cancel") {
        io.out(JSON.stringify({ action: "delete", job: `${settings.namespace}/${d.name}`, reason: d.reason }, null, 2));
        return EXIT.ok;
    }
    if (d.outcome !== "schedule") {
        io.err(`${d.outcome === "invalid" ? "invalid event" : "ignored"}: ${d.reason}`);
        return d.outcome === "invalid" ? EXIT.invalid : EXIT.ignored;
    }
    io.out(JSON.stringify(d.manifest, null, 2));
    return EXIT.ok;
}

async function schedule(flags: Record<string, string>, io: Io): Promise<number> {
    const settings = loadSettings(flags, io);
    const event = readEvent(flags, io);
    const kubeconfig = kubeconfigPath(flags, io);
    // One line says what happened (or why not); the Lambda's JSON log line would repeat it.
    const handler = createEventHandler(settings, kubeconfigJobClient(kubeconfig), () => {}, {
        steps: commandLineSteps(settings, io),
    });
    try {
        const d = await handler(event);
        switch (d.outcome) {
            case "created":
                io.out(`created ${d.job}`);
                return EXIT.ok;
            case "exists":
                io.out(`exists ${d.job}`);
                return EXIT.ok;
            case "cancelled":
                io.out(`deleted ${d.job}`);
                return EXIT.ok;
            case "ignored":
                io.err(`ignored: ${d.reason}`);
                return EXIT.ignored;
            case "refused":
                io.err(`refused: ${d.reason}`);
                return EXIT.invalid;
            default:
                io.err(`invalid event: ${d.reason}`);
                return EXIT.invalid;
        }
    } catch (e) {
        io.err(failure(e));
        return isRetryable(e) ? EXIT.retry : EXIT.invalid;
    }
}

/** A failure as one line for a person: the command line retries nothing, so it says whether running it again may help. */
export function failure(e: unknown): string {
    return `failed: ${describeFailure(e, RETRY_WORDS.cli)}`;
}

async function token(flags: Record<string, string>, io: Io): Promise<number> {
    if (!flags.cluster) throw new UsageError(`--cluster NAME is required`);
    const region = flags.region ?? io.env.AWS_REGION ?? io.env.AWS_DEFAULT_REGION ?? stackRegion(flags.stack ?? "dev");
    if (!region)
        throw new UsageError(
            `no region: pass --region, set AWS_REGION, or set aws:region in the stack (pulumi config set aws:region us-east-1)`,
        );
    if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region))
        throw new UsageError(`${JSON.stringify(region)} is not an AWS region (e.g. us-east-1)`);
    const at = flags.at ? new Date(flags.at) : new Date();
    if (Number.isNaN(at.getTime()))
        throw new UsageError(`--at ${JSON.stringify(flags.at)} is not an RFC 3339 time (e.g. 2024-08-19T07:08:47Z)`);
    io.out(
        JSON.stringify(execCredential(await signEksToken(flags.cluster, region, await cliCredentials(flags, io), at))),
    );
    return EXIT.ok;
}

/** What happened to one job's worker: exit 0 when it has one, 3 when this stack has none for it. */
async function explain(flags: Record<string, string>, target: string | undefined, io: Io): Promise<number> {
    if (!target)
        throw new UsageError(
            `explain needs a job UUID or a Buildkite job URL; ${COMMANDS.explain.help.split("\n")[0]}`,
        );
    const uuid = jobUuidOf(target);
    if (!uuid)
        throw new UsageError(
            `${JSON.stringify(target)} holds no job UUID: pass the job's UUID or its Buildkite URL (…/builds/123#<uuid>)`,
        );
    const settings = loadSettings(flags, io);
    const namespace = flags.namespace ?? settings.namespace;
    const kubeconfig = kubeconfigPath(flags, io);
    const k8s: typeof import("@kubernetes/client-node") = require("@kubernetes/client-node");
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig);
    const server = kc.getCurrentCluster()?.server ?? kubeconfig;
    const name = jobName(settings.jobPrefix, uuid);
    const batch = kc.makeApiClient(k8s.BatchV1Api);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    try {
        const job = await batch
            .readNamespacedJob({ name, namespace })
            .catch((e) => (e?.code === 404 ? undefined : Promise.reject(e)));
        const pods = (await core.listNamespacedPod({ namespace, labelSelector: `${LABELS.jobUuid}=${uuid}` })).items;
        const events = (await core.listNamespacedEvent({ namespace })).items.filter(
            (e) => e.involvedObject?.name === name || pods.some((p) => p.metadata?.name === e.involvedObject?.name),
        );
        const lines = explainWorker({ jobUuid: uuid, namespace, jobName: name, job, pods, events });
        for (const l of lines) io.out(l);
        return job || pods.length ? EXIT.ok : EXIT.ignored;
    } catch (e) {
        const err = toKubernetesError(e, `reading the worker of job ${uuid} in ${namespace}`, server);
        io.err(failure(err));
        return err.retryable ? EXIT.retry : EXIT.invalid;
    }
}

/** Runs one command; never throws. */
export async function run(argv: string[], io: Io): Promise<number> {
    const [command, ...args] = argv;
    try {
        if (command === "--help" || command === "-h" || command === "help") {
            io.out(USAGE);
            return EXIT.ok;
        }
        if (!command || !(command in COMMANDS)) {
            io.err(
                command
                    ? `unknown command ${JSON.stringify(command)}; commands: ${Object.keys(COMMANDS).join(", ")} (scaledkite --help)`
                    : USAGE.split("\n")[0],
            );
            return EXIT.invalid;
        }
        const { flags, positional, help } = parseCommandArgs(command, args);
        if (help) {
            io.out(COMMANDS[command].help);
            return EXIT.ok;
        }
        switch (command) {
            case "render":
                return await render(flags, io);
            case "schedule":
                return await schedule(flags, io);
            case "token":
                return await token(flags, io);
            default:
                return await explain(flags, positional, io);
        }
    } catch (e) {
        // One problem per line, as pulumi preview prints them.
        if (isConfigError(e))
            io.err(
                e.problems.length === 1
                    ? `invalid configuration: ${e.problems[0]}`
                    : `invalid configuration (${e.problems.length} problems):\n  ${e.problems.join("\n  ")}`,
            );
        else if (e instanceof UsageError) io.err(e.message);
        else io.err(`error: ${((e as Error)?.message ?? String(e)).split("\n")[0]}`);
        return isRetryable(e) ? EXIT.retry : EXIT.invalid;
    }
}

/** Runs the command line in this process: the `scaledkite` bin (scheduler/cli/scaledkite.js) calls it. */
export function main(argv: string[] = process.argv.slice(2)): void {
    void run(argv, {
        out: (s) => process.stdout.write(s + "\n"),
        err: (s) => process.stderr.write(s + "\n"),
        readStdin: () => fs.readFileSync(0, "utf8"),
        cwd: process.env.INIT_CWD ?? process.cwd(),
        env: process.env,
    }).then((code) => {
        process.exitCode = code;
    });
}

if (require.main === module) main();
