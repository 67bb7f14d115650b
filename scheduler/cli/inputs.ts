/**
 * What the command line reads: stack files (Pulumi.<stack>.yaml) and their settings, event files,
 * the kubeconfig, AWS credentials, and where jobs of queues that take their pod from the job are read.
 * Each failure is a UsageError or a ConfigError with one line that says what to pass instead.
 */
import * as fs from "fs";
import * as path from "path";
import { parseStackConfig, schedulerSettings } from "../config/config";
import { type AwsCredentials, credentialsFromEnv } from "../clients/eksToken";
import { stacksApi } from "../clients/stacksApi";
import { configError } from "../core/errors";
import { type SchedulerSettings } from "../core/settings";
import { stacksStepSource, type StepSource } from "../schedule/stepSource";

export const PROJECT_ROOT = path.resolve(__dirname, "..", "..");

/** A wrong or missing argument: the command exits 2 with the message and no stack trace. */
export class UsageError extends Error {}

export interface Io {
    out: (s: string) => void;
    err: (s: string) => void;
    readStdin: () => string;
    cwd: string;
    env: NodeJS.ProcessEnv;
}

/** The `config:` map of a stack file, as YAML gives it. */
function stackFileConfig(file: string): Record<string, unknown> {
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
    return (doc as { config?: Record<string, unknown> } | null)?.config ?? {};
}

/** Reads the non-secret `scaledkite:*` values of a stack file; secret values count only as "set". */
export function readStackFile(file: string): Record<string, unknown> {
    const raw: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(stackFileConfig(file))) {
        const [ns, name] = key.split(":");
        if (ns !== "scaledkite" || !name) continue;
        raw[name] = typeof value === "object" && value !== null && "secure" in value ? "<secret>" : value;
    }
    return raw;
}

export function loadSettings(flags: Record<string, string>, io: Io): SchedulerSettings {
    // Stack files live beside Pulumi.yaml; --config is relative to where the command was run.
    const file = flags.config
        ? path.resolve(io.cwd, flags.config)
        : path.join(PROJECT_ROOT, `Pulumi.${flags.stack ?? "dev"}.yaml`);
    const stack = path.basename(file).replace(/^Pulumi\.(.*)\.yaml$/, "$1");
    return schedulerSettings(parseStackConfig(readStackFile(file), { requireSecrets: false }), stack);
}

export function readEvent(flags: Record<string, string>, io: Io): string {
    if (!flags.event) throw new UsageError(`--event FILE is required (- reads standard input)`);
    if (flags.event === "-") return io.readStdin();
    try {
        return fs.readFileSync(path.resolve(io.cwd, flags.event), "utf8");
    } catch (e) {
        const err = e as NodeJS.ErrnoException;
        const why =
            err.code === "ENOENT"
                ? "no such file"
                : err.code === "EACCES"
                  ? "permission denied"
                  : err.code === "EISDIR"
                    ? "it is a directory"
                    : err.message;
        throw new UsageError(`cannot read event file ${flags.event}: ${why}`);
    }
}

/**
 * Where the command line reads jobs of queues that take their pod from the job: the Stacks API (the
 * stack's, or BUILDKITE_AGENT_ENDPOINT) with the cluster agent token in BUILDKITE_AGENT_TOKEN; without
 * the token, reading says how to give it.
 */
export function commandLineSteps(settings: SchedulerSettings, io: Io): StepSource | undefined {
    if (!settings.stacks) return undefined;
    const token = io.env.BUILDKITE_AGENT_TOKEN;
    // The stack's endpoint, unless BUILDKITE_AGENT_ENDPOINT names another (as the agent takes it).
    const endpoint = io.env.BUILDKITE_AGENT_ENDPOINT || settings.stacks.endpoint;
    if (token)
        return stacksStepSource(
            stacksApi(() => token, { endpoint }),
            settings.stacks.stackKey,
        );
    const missing = () =>
        Promise.reject(
            configError([
                "this queue takes its pod from the job, which the command line reads through Buildkite's Stacks API: set BUILDKITE_AGENT_TOKEN to a cluster agent token, or the queue's stepShape to none",
            ]),
        );
    return { read: missing, fail: missing, notify: missing };
}

export function kubeconfigPath(flags: Record<string, string>, io: Io): string {
    const kubeconfig = flags.kubeconfig ?? (io.env.KUBECONFIG || path.join(io.env.HOME ?? "", ".kube", "config"));
    if (!fs.existsSync(kubeconfig))
        throw new UsageError(
            `no kubeconfig at ${kubeconfig}: pass --kubeconfig PATH (npm run local-cluster -- up prints one)`,
        );
    return kubeconfig;
}

/** The stack's `aws:region` (Pulumi.<stack>.yaml), if the file and the key are there. */
export function stackRegion(stack: string): string | undefined {
    try {
        const region = stackFileConfig(path.join(PROJECT_ROOT, `Pulumi.${stack}.yaml`))["aws:region"];
        return typeof region === "string" ? region : undefined;
    } catch {
        return undefined;
    }
}

/**
 * Credentials as the AWS SDK finds them (its Node.js provider chain: environment, shared files with
 * profiles, SSO and assume-role, process, container and instance roles). Keys in the environment are
 * taken directly, without loading the SDK.
 */
export async function cliCredentials(flags: Record<string, string>, io: Io): Promise<AwsCredentials> {
    if (io.env.AWS_ACCESS_KEY_ID && !flags.profile) return credentialsFromEnv(io.env);
    const {
        fromNodeProviderChain,
    }: typeof import("@aws-sdk/credential-providers") = require("@aws-sdk/credential-providers");
    try {
        const c = await fromNodeProviderChain({
            profile: flags.profile ?? io.env.AWS_PROFILE,
            filepath: io.env.AWS_SHARED_CREDENTIALS_FILE,
            configFilepath: io.env.AWS_CONFIG_FILE,
        })();
        return { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken };
    } catch (e) {
        const why = ((e as Error).message ?? String(e)).split("\n")[0];
        const profile = flags.profile ?? io.env.AWS_PROFILE;
        throw new UsageError(
            `no AWS credentials${profile ? ` for profile ${profile}` : ""} (${why}): pass --profile or set AWS_PROFILE, run aws sso login, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
        );
    }
}
