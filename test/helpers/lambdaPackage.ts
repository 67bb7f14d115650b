/**
 * The Lambda as AWS runs it: the `__index.js` Pulumi serialized, in a directory of its own beside the
 * packaged node_modules, loaded by a fresh Node process (the project's Node 24) and invoked.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { SCHEDULER_IDENTITY, LOCAL_REGION } from "../../k8s/local/awsIdentities";
import { PROJECT_ROOT } from "./pulumiProgram";

/** Writes the serialized handler to a fresh directory; returns the directory. */
export function writeLambdaPackage(code: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "scaledkite-lambda-"));
    fs.writeFileSync(path.join(dir, "__index.js"), code);
    fs.symlinkSync(path.join(PROJECT_ROOT, "node_modules"), path.join(dir, "node_modules"), "dir");
    fs.writeFileSync(path.join(dir, "driver.js"), DRIVER);
    return dir;
}

// Reads a JSON list of events on stdin, invokes the handler with each in turn (as one warm container
// would), and prints one "RESULT {...}" line per event; the handler's own logs pass through.
const DRIVER = `
const started = process.hrtime.bigint();
const { handler } = require("./__index.js");
const loadedMs = Number(process.hrtime.bigint() - started) / 1e6;
let input = "";
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", async () => {
  const events = JSON.parse(input);
  let i = 0;
  for (const event of events) {
    const t = process.hrtime.bigint();
    const timeoutMs = Number(process.env.LAMBDA_TIMEOUT_MS || 30000), invoked = Date.now();
    const context = { awsRequestId: "local-" + (i++), functionName: "scaledkite-scheduler", getRemainingTimeInMillis: () => timeoutMs - (Date.now() - invoked) };
    try {
      const value = await handler(event, context);
      console.log("RESULT " + JSON.stringify({ ok: true, value, ms: Number(process.hrtime.bigint() - t) / 1e6, loadedMs, maxRssMb: process.resourceUsage().maxRSS / 1024 }));
    } catch (e) {
      console.log("RESULT " + JSON.stringify({ ok: false, error: String(e && e.message), retryable: !!(e && e.retryable), ms: Number(process.hrtime.bigint() - t) / 1e6, loadedMs }));
    }
  }
});
`;

export interface Invocation {
    ok: boolean;
    /** What the handler returned. */
    value?: any;
    error?: string;
    retryable?: boolean;
    ms: number;
    loadedMs: number;
    /** The process's peak resident memory so far (successful invocations). */
    maxRssMb?: number;
}

/**
 * Runs the packaged Lambda in a fresh Node process with the scheduler's (local) AWS credentials.
 * `launcher` runs in front of node (e.g. a shell that moves itself into a CPU-limited cgroup, then execs it).
 */
export async function invokeLambda(
    dir: string,
    events: unknown[],
    env: NodeJS.ProcessEnv = {},
    launcher: string[] = [],
): Promise<{ results: Invocation[]; logs: string[]; stderr: string; nodeVersion: string }> {
    const [command, ...args] = [...launcher, process.execPath, "driver.js"];
    const child = spawn(command, args, {
        cwd: dir,
        env: {
            PATH: process.env.PATH,
            AWS_ACCESS_KEY_ID: SCHEDULER_IDENTITY.accessKeyId,
            AWS_SECRET_ACCESS_KEY: SCHEDULER_IDENTITY.secretAccessKey,
            AWS_REGION: LOCAL_REGION,
            ...env,
        },
        stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (c) => (out += c));
    child.stderr.on("data", (c) => (err += c));
    child.stdin.end(JSON.stringify(events));
    const code = await new Promise<number>((resolve) => child.on("close", (c) => resolve(c ?? -1)));
    if (code !== 0)
        throw new Error(`the Lambda process exited ${code}: ${err.trim().split("\n").slice(-5).join(" | ")}`);
    const lines = out.trim().split("\n");
    return {
        results: lines.filter((l) => l.startsWith("RESULT ")).map((l) => JSON.parse(l.slice(7))),
        logs: lines.filter((l) => !l.startsWith("RESULT ")),
        stderr: err,
        nodeVersion: process.version,
    };
}
