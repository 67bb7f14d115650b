/**
 * npm run -s bench [-- --json] [--runs N] [--jobs N] [--only PHASE]: how fast an event becomes a
 * worker Job, and (on the real node) a running job, against the local control plane (started for the
 * run if `npm run local-cluster -- up` has not started one).
 *
 * A benchmark, not a test: it prints figures and asserts nothing. Each figure is the median of
 * several runs (--runs, default 3; cold starts 5 times that); the end-to-end phase runs --jobs jobs
 * (default 20). With --json, stdout holds only the JSON object; progress (a line per phase) goes to
 * stderr either way. Phases: cold, warm, burst, token-sync, memory, end-to-end.
 */
import { spawn, execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { LOCAL_REGION, localJobClient, SCHEDULER_IDENTITY, TOKEN_SYNC_IDENTITY } from "../../k8s/local/awsIdentities";
import { type ClusterState, down, status, up } from "../../k8s/local/cluster";
import { createEventHandler, decide } from "../../scheduler/schedule/lambda";
import { anEvent } from "../helpers/builders";
import { deleteNamespace, deployStack } from "../helpers/deploy";
import { invokeLambda, writeLambdaPackage } from "../helpers/lambdaPackage";
import { lambdaArchive, lambdaCode, PROJECT_ROOT } from "../helpers/pulumiProgram";
import { startSecretsManager, storedSecret } from "../helpers/secretsManagerStandIn";
import { endToEnd, endToEndFigures } from "./endToEnd";
import { startStacksApi } from "../../k8s/local/stacksApiStandIn";
import { stacksApi } from "../../scheduler/clients/stacksApi";
import { stacksStepSource } from "../../scheduler/schedule/stepSource";
import { KUBERNETES_PLUGIN } from "../../scheduler/core/step";

const args = process.argv.slice(2);
const json = args.includes("--json");
const runsArg = args.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(args[runsArg + 1]) : 3;
const jobsArg = args.indexOf("--jobs");
const E2E_JOBS = jobsArg >= 0 ? Number(args[jobsArg + 1]) : 20;
const onlyArg = args.indexOf("--only");
const ONLY = onlyArg >= 0 ? args[onlyArg + 1] : undefined;
const PHASES = ["cold", "warm", "step-read", "burst", "token-sync", "memory", "end-to-end"];
/** The round trip to Buildkite's Stacks API the step-read phase injects. */
const STACKS_RTT_MS = 30;
const runs = (phase: string) => ONLY === undefined || ONLY === phase;
const WARM_EVENTS = 100;
const BURST_JOBS = 1000;
const BURST_CONCURRENCY = 50;
const progress = (s: string) => {
    process.stderr.write(s + "\n");
};

const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const percentile = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;
const ms = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;

/** Warm handler latency against a bare create of the same manifest with the same client. */
async function warm(state: ClusterState, settings: Parameters<typeof createEventHandler>[0]) {
    const creator = localJobClient(state.server, state.caFile);
    const handle = createEventHandler(settings, creator, () => {});
    for (let i = 0; i < 10; i++) await handle(anEvent().build()); // warm up: token, connection, JIT
    const handler: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < WARM_EVENTS; i++) {
        const event = anEvent().build();
        let t = process.hrtime.bigint();
        await handle(event);
        handler.push(ms(t));
        const d = decide(settings, anEvent().build());
        if (d.outcome !== "schedule") throw new Error(d.reason);
        t = process.hrtime.bigint();
        await creator.createJob(d.manifest);
        bare.push(ms(t));
    }
    return {
        p50: percentile(handler, 50),
        p99: percentile(handler, 99),
        bare: percentile(bare, 50),
        bareP99: percentile(bare, 99),
    };
}

/**
 * Warm handler latency on a queue that takes its pod from the job: each event's job read through the
 * Stacks API stand-in, answering after STACKS_RTT_MS, with a step image and plugin (or an env of
 * `envKb` KB besides), next to the same handler on a queue that reads nothing.
 */
async function stepRead(state: ClusterState, shaped: Parameters<typeof createEventHandler>[0], envKb: number) {
    const stacks = await startStacksApi();
    stacks.latencyMs = STACKS_RTT_MS;
    try {
        const steps = stacksStepSource(
            stacksApi(() => stacks.token, { endpoint: stacks.endpoint }),
            "bench",
        );
        const handle = createEventHandler(shaped, localJobClient(state.server, state.caFile), () => {}, { steps });
        const event = () => {
            const e = anEvent().build();
            const uuid = e.detail.job.uuid as string;
            stacks.jobs.set(uuid, {
                id: uuid,
                command: "make test",
                env: {
                    BUILDKITE_IMAGE: "alpine:latest",
                    BUILDKITE_PLUGINS: JSON.stringify([
                        { [KUBERNETES_PLUGIN]: { sidecars: [{ image: "nginx:latest" }], checkout: { skip: true } } },
                    ]),
                    BIG: "x".repeat(envKb * 1024),
                },
            });
            return e;
        };
        for (let i = 0; i < 10; i++) await handle(event());
        const times: number[] = [];
        for (let i = 0; i < WARM_EVENTS; i++) {
            const e = event();
            const t = process.hrtime.bigint();
            const d = await handle(e);
            times.push(ms(t));
            if (d.outcome !== "created") throw new Error(`step-read: ${d.outcome} ${d.reason}`);
        }
        return { p50: percentile(times, 50), p99: percentile(times, 99) };
    } finally {
        await stacks.close();
    }
}

/** Wall time of a fresh Node process: loading the serialized Lambda and handling one event, or nothing. */
async function coldStart(dir: string, withHandler: boolean): Promise<number> {
    const t = process.hrtime.bigint();
    if (withHandler) {
        const r = await invokeLambda(dir, [anEvent().build()]);
        if (!r.results[0]?.ok) throw new Error(`cold start event failed: ${JSON.stringify(r.results[0])}`);
    } else {
        await new Promise<void>((resolve, reject) => {
            const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
            child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`node exited ${code}`))));
        });
    }
    return ms(t);
}

/** 1,000 distinct events, 50 in flight, through the serialized Lambda in one handler process. */
async function burst(
    state: ClusterState,
    dir: string,
    namespace: string,
): Promise<{ seconds: number; rssMb: number; jobs: number }> {
    const driver = `
const { handler } = require("./__index.js");
let input = "";
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", async () => {
  const events = JSON.parse(input);
  let peak = process.memoryUsage().rss;
  const sample = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 5);
  await handler(events[0], {}); // the container is warm before the burst, as under load
  const t = process.hrtime.bigint();
  let next = 1, failed = 0;
  async function worker() {
    while (next < events.length) {
      const e = events[next++];
      for (let attempt = 0; attempt < 5; attempt++) {
        try { await handler(e, {}); break; } catch (err) { if (attempt === 4) failed++; }
      }
    }
  }
  await Promise.all(Array.from({ length: ${BURST_CONCURRENCY} }, worker));
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  clearInterval(sample);
  peak = Math.max(peak, process.memoryUsage().rss, process.resourceUsage().maxRSS * 1024);
  console.error(JSON.stringify({ seconds, rssMb: peak / 1048576, failed }));
});`;
    fs.writeFileSync(path.join(dir, "burst.js"), driver);
    const events = Array.from({ length: BURST_JOBS + 1 }, () => anEvent().build());
    const child = spawn(process.execPath, ["burst.js"], {
        cwd: dir,
        env: { PATH: process.env.PATH, ...lambdaEnv() },
        stdio: ["pipe", "ignore", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (c) => (err += c));
    child.stdin.end(JSON.stringify(events));
    await new Promise((r) => child.on("close", r));
    const result = JSON.parse(err.trim().split("\n").pop()!);
    if (result.failed) throw new Error(`${result.failed} burst events failed`);
    const k8s: typeof import("@kubernetes/client-node") = require("@kubernetes/client-node");
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(state.kubeconfig);
    const batch = kc.makeApiClient(k8s.BatchV1Api);
    let jobs = 0;
    let cont: string | undefined;
    do {
        const page = await batch.listNamespacedJob({ namespace, limit: 500, _continue: cont });
        jobs += page.items.length;
        cont = page.metadata?._continue;
    } while (cont);
    if (jobs < BURST_JOBS + 1) throw new Error(`only ${jobs} of ${BURST_JOBS + 1} Jobs are present after the burst`);
    return { seconds: result.seconds, rssMb: result.rssMb, jobs: BURST_JOBS };
}

function lambdaEnv(): Record<string, string> {
    return {
        AWS_ACCESS_KEY_ID: SCHEDULER_IDENTITY.accessKeyId,
        AWS_SECRET_ACCESS_KEY: SCHEDULER_IDENTITY.secretAccessKey,
        AWS_REGION: LOCAL_REGION,
    };
}

/** The zipped size of what Pulumi uploads: __index.js plus the node_modules folders it packages. */
async function packageBytes(
    run: Parameters<typeof lambdaArchive>[0],
    fn = "scheduler-fn",
): Promise<{ bytes: number; packages: number }> {
    const archive = await lambdaArchive(run, fn);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "scaledkite-zip-"));
    fs.writeFileSync(path.join(dir, "__index.js"), await lambdaCode(run, fn));
    const paths = Object.keys(archive).filter((p) => p !== "__index.js");
    for (const p of paths) {
        fs.mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
        fs.cpSync(path.join(PROJECT_ROOT, p), path.join(dir, p), { recursive: true, dereference: true });
    }
    execFileSync("zip", ["-q", "-r", "-X", "lambda.zip", "."], { cwd: dir });
    const bytes = fs.statSync(path.join(dir, "lambda.zip")).size;
    fs.rmSync(dir, { recursive: true, force: true });
    return { bytes, packages: paths.length };
}

/** The token sync Lambda (agentTokenSecretArn): its package, and a cold start that reads the secret and writes the Secret. */
async function tokenSyncFigures(state: ClusterState, namespaces: string[]): Promise<Record<string, number>> {
    const arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:bench/agent-token-AbC123";
    const sm = await startSecretsManager([TOKEN_SYNC_IDENTITY]);
    sm.secrets.set(arn, storedSecret("bkua_bench", [TOKEN_SYNC_IDENTITY]));
    const stack = await deployStack(
        state,
        `bench-${process.pid}-token-sync`,
        { agentToken: null, agentTokenSecretArn: arn },
        "stand-in",
    );
    namespaces.push(stack.namespace);
    try {
        const pkg = await packageBytes(stack.run, "token-sync-fn");
        const dir = writeLambdaPackage(await lambdaCode(stack.run, "token-sync-fn"));
        const env = {
            AWS_ACCESS_KEY_ID: TOKEN_SYNC_IDENTITY.accessKeyId,
            AWS_SECRET_ACCESS_KEY: TOKEN_SYNC_IDENTITY.secretAccessKey,
            AWS_REGION: LOCAL_REGION,
            AWS_ENDPOINT_URL_SECRETS_MANAGER: sm.endpoint,
        };
        const cold: number[] = [];
        for (let i = 0; i < RUNS * 5; i++) {
            sm.put(arn, `bkua_bench_${i}`);
            const t = process.hrtime.bigint();
            const r = await invokeLambda(dir, [{ source: "scaledkite.deploy" }], env);
            if (!r.results[0]?.ok || r.results[0].value?.outcome !== "updated")
                throw new Error(`token sync failed: ${JSON.stringify(r.results[0])}`);
            cold.push(ms(t));
        }
        fs.rmSync(dir, { recursive: true, force: true });
        return {
            token_sync_cold_ms: round(median(cold)),
            token_sync_package_bytes: pkg.bytes,
            token_sync_package_node_modules: pkg.packages,
        };
    } finally {
        await sm.close();
    }
}

/** AWS gives a function one full vCPU at 1,769 MB, and CPU in proportion to memory below that. */
const FULL_VCPU_MB = 1769;
/** Lambda's x86 price per GB-second and per million requests (us-east-1). */
const PRICE_GB_S = 0.0000166667;
const PRICE_PER_MILLION_REQUESTS = 0.2;
const CPU_CGROUP_ROOT = "/sys/fs/cgroup/cpu";

/**
 * The scheduler Lambda at each memory size, with the CPU share AWS gives that size emulated by a CFS
 * quota on the Lambda's process (cgroup v1 cpu controller): cold start (a fresh process, one event),
 * warm latency (one process, events one after another), peak memory, and the cost per million events.
 */
async function memoryFigures(dir: string, sizes = [128, 256, 512, 1024]): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    const period = 100_000;
    for (const mb of sizes) {
        const cgroup = path.join(CPU_CGROUP_ROOT, `scaledkite-bench-${process.pid}-${mb}`);
        fs.mkdirSync(cgroup, { recursive: true });
        try {
            fs.writeFileSync(path.join(cgroup, "cpu.cfs_period_us"), String(period));
            fs.writeFileSync(path.join(cgroup, "cpu.cfs_quota_us"), String(Math.round((period * mb) / FULL_VCPU_MB)));
            // The shell moves itself into the cgroup, then becomes node: every instruction of the Lambda runs under the quota.
            const launcher = ["sh", "-c", `echo $$ > ${path.join(cgroup, "cgroup.procs")} && exec "$@"`, "sh"];
            const cold: number[] = [];
            for (let i = 0; i < RUNS * 3; i++) {
                const t = process.hrtime.bigint();
                const r = await invokeLambda(dir, [anEvent().build()], lambdaEnv(), launcher);
                if (!r.results[0]?.ok) throw new Error(`memory ${mb}: ${JSON.stringify(r.results[0])}`);
                cold.push(ms(t));
            }
            const warmRun = await invokeLambda(
                dir,
                Array.from({ length: 31 }, () => anEvent().build()),
                lambdaEnv(),
                launcher,
            );
            const warmMs = warmRun.results.slice(1).map((r) => r.ms);
            const p50 = percentile(warmMs, 50);
            out[`mem${mb}_cold_ms`] = round(median(cold));
            out[`mem${mb}_warm_p50_ms`] = round(p50, 1);
            out[`mem${mb}_warm_p99_ms`] = round(percentile(warmMs, 99), 1);
            out[`mem${mb}_peak_rss_mb`] = round(Math.max(...warmRun.results.map((r) => r.maxRssMb ?? 0)));
            // Billed per ms of duration; one event per invocation (SQS batches of up to 10 cost less).
            out[`mem${mb}_usd_per_million_events`] = round(
                (mb / 1024) * (Math.ceil(p50) / 1000) * 1e6 * PRICE_GB_S + PRICE_PER_MILLION_REQUESTS,
                2,
            );
            progress(
                `  ${mb} MB (${round((100 * mb) / FULL_VCPU_MB)} % of a vCPU): cold ${out[`mem${mb}_cold_ms`]} ms, warm p50 ${out[`mem${mb}_warm_p50_ms`]} ms, $${out[`mem${mb}_usd_per_million_events`]} per million events`,
            );
        } finally {
            fs.rmdirSync(cgroup);
        }
    }
    return out;
}

async function main(): Promise<void> {
    if (ONLY !== undefined && !PHASES.includes(ONLY))
        throw new Error(`--only ${ONLY} is not a phase: use one of ${PHASES.join(", ")}`);
    const startedHere = !status().running;
    const state = await up(progress);
    const namespaces: string[] = [];
    try {
        const figures: Record<string, number | string> = { node: process.version, runs: RUNS, cold_runs: RUNS * 5 };
        const stack = await deployStack(state, `bench-${process.pid}-warm`, { dind: false }, "stand-in");
        namespaces.push(stack.namespace);
        const pkg = await packageBytes(stack.run);
        // Each phase starts on a quiet cluster: the cold starts first, before any worker pods run.
        const dir = writeLambdaPackage(await lambdaCode(stack.run));

        if (runs("cold")) {
            progress(`cold start: ${RUNS * 5} fresh processes each way`);
            const cold: number[] = [];
            const baseline: number[] = [];
            for (let i = 0; i < RUNS * 5; i++) {
                cold.push(await coldStart(dir, true));
                baseline.push(await coldStart(dir, false));
            }
            figures.cold_start_ms = round(median(cold));
            figures.node_baseline_ms = round(median(baseline));
            figures.cold_overhead_ms = round(Number(figures.cold_start_ms) - Number(figures.node_baseline_ms));
        }

        if (runs("warm")) {
            progress(`warm: ${RUNS} runs of ${WARM_EVENTS} events`);
            const warmRuns = [];
            for (let i = 0; i < RUNS; i++) warmRuns.push(await warm(state, stack.settings));
            figures.warm_p50_ms = round(median(warmRuns.map((r) => r.p50)), 2);
            figures.warm_p99_ms = round(median(warmRuns.map((r) => r.p99)), 2);
            figures.bare_create_p50_ms = round(median(warmRuns.map((r) => r.bare)), 2);
            figures.bare_create_p99_ms = round(median(warmRuns.map((r) => r.bareP99)), 2);
            figures.warm_overhead_ratio = round(Number(figures.warm_p50_ms) / Number(figures.bare_create_p50_ms), 3);
        }

        if (runs("step-read")) {
            progress(
                `step-read: the job read through the Stacks API (${STACKS_RTT_MS} ms round trip), ${RUNS} runs of ${WARM_EVENTS} events`,
            );
            const shapedStack = await deployStack(
                state,
                `bench-${process.pid}-steps`,
                { dind: false, stepShape: "plugin" },
                "stand-in",
            );
            namespaces.push(shapedStack.namespace);
            const plain = [];
            const small = [];
            const big = [];
            for (let i = 0; i < RUNS; i++) {
                plain.push(await warm(state, stack.settings));
                small.push(await stepRead(state, shapedStack.settings, 0));
                big.push(await stepRead(state, shapedStack.settings, 100));
            }
            figures.stacks_rtt_ms = STACKS_RTT_MS;
            figures.no_read_p50_ms = round(median(plain.map((r) => r.p50)), 2);
            figures.step_read_p50_ms = round(median(small.map((r) => r.p50)), 2);
            figures.step_read_p99_ms = round(median(small.map((r) => r.p99)), 2);
            figures.step_read_100kb_p50_ms = round(median(big.map((r) => r.p50)), 2);
            figures.step_read_cost_ms = round(Number(figures.step_read_p50_ms) - Number(figures.no_read_p50_ms), 2);
            figures.step_read_100kb_cost_ms = round(
                Number(figures.step_read_100kb_p50_ms) - Number(figures.no_read_p50_ms),
                2,
            );
        }

        if (runs("burst")) {
            progress(`burst: ${RUNS} runs of ${BURST_JOBS} events, ${BURST_CONCURRENCY} in flight`);
            const bursts = [];
            for (let i = 0; i < RUNS; i++) {
                const ns = `bench-${process.pid}-burst-${i}`;
                namespaces.push(ns);
                const s = await deployStack(
                    state,
                    ns,
                    {
                        dind: false,
                        ttlSecondsAfterFinished: 3600,
                        annotations: { "local.scaledkite.io/run-seconds": "3600" },
                    },
                    "stand-in",
                );
                bursts.push(await burst(state, writeLambdaPackage(await lambdaCode(s.run)), ns));
                await deleteNamespace(state, ns);
            }
            figures.burst_jobs = BURST_JOBS;
            figures.burst_seconds = round(median(bursts.map((b) => b.seconds)), 2);
            figures.burst_jobs_per_s = round(BURST_JOBS / Number(figures.burst_seconds));
            figures.peak_rss_mb = round(median(bursts.map((b) => b.rssMb)));
        }
        figures.package_bytes = pkg.bytes;
        figures.package_node_modules = pkg.packages;

        if (runs("memory")) {
            if (!fs.existsSync(path.join(CPU_CGROUP_ROOT, "cpu.cfs_quota_us"))) {
                progress(
                    `memory sizes: skipped, no cgroup v1 cpu controller at ${CPU_CGROUP_ROOT} to emulate Lambda's CPU share`,
                );
            } else {
                progress(
                    `memory sizes: 128, 256, 512 and 1,024 MB with Lambda's CPU share; ${RUNS * 3} cold starts and 30 warm events each`,
                );
                Object.assign(figures, await memoryFigures(dir));
            }
        }
        fs.rmSync(dir, { recursive: true, force: true });

        if (runs("token-sync")) {
            progress(`token sync: ${RUNS * 5} fresh processes, one sync each`);
            Object.assign(figures, await tokenSyncFigures(state, namespaces));
        }

        if (runs("end-to-end")) {
            if (!state.node) {
                progress("end to end: skipped, the local cluster runs no real node (SCALEDKITE_LOCAL_NODE=off?)");
            } else {
                progress(`end to end: ${E2E_JOBS} jobs one after another on the real node, the real agent, dind on`);
                const ns = `bench-${process.pid}-e2e`;
                namespaces.push(ns);
                Object.assign(
                    figures,
                    endToEndFigures(await endToEnd(state, ns, E2E_JOBS, { dind: "privileged" }, progress)),
                );
                progress(`end to end without dind: ${E2E_JOBS} jobs`);
                namespaces.push(`${ns}-no-dind`);
                Object.assign(
                    figures,
                    endToEndFigures(
                        await endToEnd(state, `${ns}-no-dind`, E2E_JOBS, { dind: "none" }, progress),
                        "no_dind_",
                    ),
                );
            }
        }

        if (json) {
            console.log(JSON.stringify(figures));
        } else {
            const width = Math.max(...Object.keys(figures).map((k) => k.length));
            for (const [k, v] of Object.entries(figures)) console.log(`${k.padEnd(width)}  ${v}`);
        }
    } finally {
        for (const ns of namespaces) await deleteNamespace(state, ns);
        if (startedHere) await down(() => {});
    }
}

main().catch((e) => {
    console.error(`bench failed: ${(e as Error).message.split("\n")[0]}`);
    process.exit(1);
});
