/**
 * The command line: what the Lambda does, for people and scripts.
 *
 *   npm run --silent scaledkite -- render   --event FILE|- [--stack dev | --config FILE]
 *     (a Job Finished event of a job that never started renders the deletion it would make)
 *   npm run --silent scaledkite -- schedule --event FILE|- [--kubeconfig PATH] [--stack dev | --config FILE]
 *   npm run --silent scaledkite -- token    --cluster NAME [--region R] [--at RFC3339]
 *   npm run --silent scaledkite -- explain  JOB-UUID|JOB-URL [--kubeconfig PATH] [--namespace NS] [--stack dev | --config FILE]
 *
 * Exit codes: 0 done; 3 the event is not for this stack (reason on stderr); 2 invalid event, config or
 * arguments, or a failure no retry fixes; 1 a failure worth retrying. Errors are one line, no trace.
 */
import * as fs from "fs";
import * as path from "path";
import { parseStackConfig, schedulerSettings } from "./config";
import { execCredential, credentialsFromEnv, signEksToken } from "./eksToken";
import { configError, isConfigError, isRetryable } from "./errors";
import { createEventHandler, decide } from "./handler";
import { kubeconfigJobClient, toKubernetesError } from "./kube";
import { explainWorker, jobUuidOf } from "./explain";
import { jobName, LABELS } from "./manifest";

import { SchedulerSettings } from "./settings";

const PROJECT_ROOT = path.resolve(__dirname, "..");

export const EXIT = { ok: 0, retry: 1, invalid: 2, ignored: 3 } as const;

export interface Io {
    out: (s: string) => void;
    err: (s: string) => void;
    readStdin: () => string;
    cwd: string;
    env: NodeJS.ProcessEnv;
}

class UsageError extends Error {}

const USAGE = "usage: scaledkite render --event FILE | schedule --event FILE [--kubeconfig PATH] | token --cluster NAME [--region R] [--at RFC3339] | explain JOB-UUID|URL [--kubeconfig PATH] [--namespace NS]; options --stack NAME, --config FILE";

/** Parses `--flag value` pairs; rejects unknown flags with the usage line. */
export function parseFlags(args: string[], allowed: string[]): Record<string, string> {
    const flags: Record<string, string> = {};
    for (let i = 0; i < args.length; i++) {
        const a = args[i];
        const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
        if (!m || !allowed.includes(m[1])) throw new UsageError(`unknown argument ${JSON.stringify(a)}; ${USAGE}`);
        const value = m[2] ?? args[++i];
        if (value === undefined) throw new UsageError(`--${m[1]} needs a value`);
        flags[m[1]] = value;
    }
    return flags;
}

/** Reads the non-secret `scaledkite:*` values of a stack file; secret values count only as "set". */
export function readStackFile(file: string): Record<string, unknown> {
    let text: string;
    try {
        text = fs.readFileSync(file, "utf8");
    } catch {
        throw configError([`cannot read stack config ${file}: pass --stack NAME (Pulumi.NAME.yaml) or --config FILE`]);
    }
    const yaml: typeof import("js-yaml") = require("js-yaml");
    let doc: unknown;
    try {
        doc = yaml.load(text);
    } catch (e) {
        throw configError([`${file} is not valid YAML (${(e as Error).message.split("\n")[0]})`]);
    }
    const config = (doc as { config?: Record<string, unknown> } | null)?.config ?? {};
    const raw: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(config)) {
        const [ns, name] = key.split(":");
        if (ns !== "scaledkite" || !name) continue;
        raw[name] = typeof value === "object" && value !== null && "secure" in value ? "<secret>" : value;
    }
    return raw;
}

function loadSettings(flags: Record<string, string>, io: Io): SchedulerSettings {
    // Stack files live beside Pulumi.yaml; --config is relative to where the command was run.
    const file = flags.config ? path.resolve(io.cwd, flags.config) : path.join(PROJECT_ROOT, `Pulumi.${flags.stack ?? "dev"}.yaml`);
    return schedulerSettings(parseStackConfig(readStackFile(file), { requireSecrets: false }));
}

function readEvent(flags: Record<string, string>, io: Io): string {
    if (!flags.event) throw new UsageError(`--event FILE is required (- reads standard input)`);
    if (flags.event === "-") return io.readStdin();
    try {
        return fs.readFileSync(path.resolve(io.cwd, flags.event), "utf8");
    } catch {
        throw new UsageError(`cannot read event file ${flags.event}`);
    }
}

async function render(args: string[], io: Io): Promise<number> {
    const flags = parseFlags(args, ["event", "stack", "config"]);
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

function kubeconfigPath(flags: Record<string, string>, io: Io): string {
    const kubeconfig = flags.kubeconfig ?? (io.env.KUBECONFIG || path.join(io.env.HOME ?? "", ".kube", "config"));
    if (!fs.existsSync(kubeconfig)) throw new UsageError(`no kubeconfig at ${kubeconfig}: pass --kubeconfig PATH (npm run local-cluster -- up prints one)`);
    return kubeconfig;
}

async function schedule(args: string[], io: Io): Promise<number> {
    const flags = parseFlags(args, ["event", "stack", "config", "kubeconfig"]);
    const settings = loadSettings(flags, io);
    const event = readEvent(flags, io);
    const kubeconfig = kubeconfigPath(flags, io);
    const handler = createEventHandler(settings, kubeconfigJobClient(kubeconfig), (line) => io.err(line));
    try {
        const d = await handler(event);
        switch (d.outcome) {
            case "created": io.out(`created ${d.job}`); return EXIT.ok;
            case "exists": io.out(`exists ${d.job}`); return EXIT.ok;
            case "cancelled": io.out(`deleted ${d.job}`); return EXIT.ok;
            case "ignored": io.err(`ignored: ${d.reason}`); return EXIT.ignored;
            default: io.err(`invalid event: ${d.reason}`); return EXIT.invalid;
        }
    } catch (e) {
        io.err(`failed: ${(e as Error).message}`);
        return isRetryable(e) ? EXIT.retry : EXIT.invalid;
    }
}

async function token(args: string[], io: Io): Promise<number> {
    const flags = parseFlags(args, ["cluster", "region", "at"]);
    if (!flags.cluster) throw new UsageError(`--cluster NAME is required`);
    const region = flags.region ?? io.env.AWS_REGION ?? io.env.AWS_DEFAULT_REGION;
    if (!region) throw new UsageError(`no region: pass --region or set AWS_REGION`);
    if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) throw new UsageError(`${JSON.stringify(region)} is not an AWS region (e.g. us-east-1)`);
    const at = flags.at ? new Date(flags.at) : new Date();
    if (Number.isNaN(at.getTime())) throw new UsageError(`--at ${JSON.stringify(flags.at)} is not an RFC 3339 time (e.g. 2024-08-19T07:08:47Z)`);
    let credentials;
    try {
        credentials = credentialsFromEnv(io.env);
    } catch (e) {
        throw new UsageError((e as Error).message);
    }
    io.out(JSON.stringify(execCredential(await signEksToken(flags.cluster, region, credentials, at))));
    return EXIT.ok;
}

/** What happened to one job's worker: exit 0 when it has one, 3 when this stack has none for it. */
async function explain(args: string[], io: Io): Promise<number> {
    const [target, ...rest] = args;
    if (!target || target.startsWith("--")) throw new UsageError(`explain needs a job UUID or a Buildkite job URL; ${USAGE}`);
    const uuid = jobUuidOf(target);
    if (!uuid) throw new UsageError(`${JSON.stringify(target)} holds no job UUID: pass the job's UUID or its Buildkite URL (…/builds/123#<uuid>)`);
    const flags = parseFlags(rest, ["stack", "config", "kubeconfig", "namespace"]);
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
        const job = await batch.readNamespacedJob({ name, namespace }).catch((e) => (e?.code === 404 ? undefined : Promise.reject(e)));
        const pods = (await core.listNamespacedPod({ namespace, labelSelector: `${LABELS.jobUuid}=${uuid}` })).items;
        const events = (await core.listNamespacedEvent({ namespace })).items
            .filter((e) => e.involvedObject?.name === name || pods.some((p) => p.metadata?.name === e.involvedObject?.name));
        const lines = explainWorker({ jobUuid: uuid, namespace, jobName: name, job, pods, events });
        for (const l of lines) io.out(l);
        return job || pods.length ? EXIT.ok : EXIT.ignored;
    } catch (e) {
        const err = toKubernetesError(e, `reading the worker of job ${uuid} in ${namespace}`, server);
        io.err(`failed: ${err.message}`);
        return err.retryable ? EXIT.retry : EXIT.invalid;
    }
}

/** Runs one command; never throws. */
export async function run(argv: string[], io: Io): Promise<number> {
    const [command, ...args] = argv;
    try {
        switch (command) {
            case "render": return await render(args, io);
            case "schedule": return await schedule(args, io);
            case "token": return await token(args, io);
            case "explain": return await explain(args, io);
            default:
                io.err(command ? `unknown command ${JSON.stringify(command)}; ${USAGE}` : USAGE);
                return EXIT.invalid;
        }
    } catch (e) {
        if (isConfigError(e)) io.err(`invalid configuration: ${e.problems.join("; ")}`);
        else if (e instanceof UsageError) io.err(e.message);
        else io.err(`error: ${((e as Error)?.message ?? String(e)).split("\n")[0]}`);
        return isRetryable(e) ? EXIT.retry : EXIT.invalid;
    }
}

if (require.main === module) {
    run(process.argv.slice(2), {
        out: (s) => process.stdout.write(s + "\n"),
        err: (s) => process.stderr.write(s + "\n"),
        readStdin: () => fs.readFileSync(0, "utf8"),
        cwd: process.env.INIT_CWD ?? process.cwd(),
        env: process.env,
    }).then((code) => { process.exitCode = code; });
}
