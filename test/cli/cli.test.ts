/**
 * The command line: render, schedule and token, with their exit codes and one-line errors.
 */
import * as assert from "assert";
import { STAND_IN_LABEL } from "../../k8s/local/podRunner";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { EXIT, run } from "../../scheduler/cli/cli";
import { anEvent, SAMPLE_EVENT_FILE } from "../helpers/builders";
import { localCluster } from "../helpers/localCluster";
import { PROJECT_ROOT } from "../helpers/pulumiProgram";

interface Result {
    code: number;
    out: string;
    err: string;
}

async function cli(args: string[], opts: { stdin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
    let out = "";
    let err = "";
    const code = await run(args, {
        out: (s) => (out += s + "\n"),
        err: (s) => (err += s + "\n"),
        readStdin: () => opts.stdin ?? "",
        cwd: PROJECT_ROOT,
        env: opts.env ?? {},
    });
    return { code, out, err };
}

function tempFile(content: string, name = "event.json"): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "scaledkite-cli-"));
    fs.writeFileSync(path.join(dir, name), content);
    return path.join(dir, name);
}

describe("command line", () => {
    describe("render", () => {
        it("prints the Job manifest for the documented sample event (dev stack)", async () => {
            const r = await cli(["render", "--event", SAMPLE_EVENT_FILE]);
            assert.strictEqual(r.code, EXIT.ok, r.err);
            const job = JSON.parse(r.out);
            assert.strictEqual(job.kind, "Job");
            assert.strictEqual(job.metadata.name, "buildkite-agent-9e6c3f19-4fdb-4e8e-b925-28cd7504e17f");
            assert.deepStrictEqual(job.metadata.labels.team, "platform", "the dev stack's labels");
            const pod = job.spec.template.spec;
            assert.strictEqual(
                pod.serviceAccountName,
                "scaledkite-worker",
                "the dev stack's ECR registries: the workers' service account",
            );
            const env = Object.fromEntries(
                pod.containers[0].env.map((e: { name: string; value?: string }) => [e.name, e.value]),
            );
            assert.strictEqual(
                env.BUILDKITE_ADDITIONAL_HOOKS_PATHS,
                "/buildkite/hooks,/buildkite/scaledkite-hooks",
                "the dev stack's own hooks, then the ECR login hook",
            );
        });

        it("reads the event from standard input with --event -", async () => {
            const r = await cli(["render", "--event", "-"], { stdin: fs.readFileSync(SAMPLE_EVENT_FILE, "utf8") });
            assert.strictEqual(r.code, EXIT.ok);
        });

        it("uses the queue's own settings", async () => {
            const r = await cli([
                "render",
                "--event",
                tempFile(JSON.stringify(anEvent().queue("docker-free").build())),
            ]);
            const job = JSON.parse(r.out);
            assert.strictEqual(job.spec.template.spec.initContainers, undefined);
            assert.deepStrictEqual(
                job.spec.template.spec.containers[1].resources,
                { requests: { cpu: "250m", memory: "512Mi" } },
                "the build's container",
            );
        });

        const cases: [string, string[], string | undefined, number, RegExp][] = [
            [
                "a foreign queue",
                ["render", "--event", "@gpu"],
                undefined,
                EXIT.ignored,
                /^ignored: job targets queue=gpu/,
            ],
            [
                "malformed JSON",
                ["render", "--event", "@bad"],
                undefined,
                EXIT.invalid,
                /^invalid event: event is not valid JSON/,
            ],
            [
                "a missing event file",
                ["render", "--event", "/nonexistent.json"],
                undefined,
                EXIT.invalid,
                /^cannot read event file \/nonexistent.json: no such file\n/,
            ],
            [
                "an event file that is a directory",
                ["render", "--event", "/tmp"],
                undefined,
                EXIT.invalid,
                /^cannot read event file \/tmp: it is a directory\n/,
            ],
            [
                "a flag without its value",
                ["render", "--event"],
                undefined,
                EXIT.invalid,
                /^--event needs a value; usage: scaledkite render/,
            ],
            [
                "an argument render does not take",
                ["render", "extra", "--event", SAMPLE_EVENT_FILE],
                undefined,
                EXIT.invalid,
                /^unexpected argument "extra"/,
            ],
            ["no --event", ["render"], undefined, EXIT.invalid, /--event FILE is required/],
            ["an unknown flag", ["render", "--evnt", "x"], undefined, EXIT.invalid, /unknown argument "--evnt"/],
            [
                "an unknown stack",
                ["render", "--event", SAMPLE_EVENT_FILE, "--stack", "prod"],
                undefined,
                EXIT.invalid,
                /cannot read stack config .*Pulumi.prod.yaml/,
            ],
            [
                "an invalid config file",
                ["render", "--event", SAMPLE_EVENT_FILE, "--config", "@badconfig"],
                undefined,
                EXIT.invalid,
                /^invalid configuration: scaledkite:jobPrefix/,
            ],
            ["an unknown command", ["deploy"], undefined, EXIT.invalid, /unknown command "deploy"/],
        ];
        for (const [name, args, , code, message] of cases) {
            it(`exits ${code} with one line for ${name}`, async () => {
                const resolved = args.map((a) =>
                    a === "@gpu"
                        ? tempFile(JSON.stringify(anEvent().queue("gpu").build()))
                        : a === "@bad"
                          ? tempFile("{not json")
                          : a === "@badconfig"
                            ? tempFile(
                                  "config:\n  scaledkite:cluster: c\n  scaledkite:eventBusName: b\n  scaledkite:jobPrefix: Bad_\n",
                                  "Pulumi.x.yaml",
                              )
                            : a,
                );
                const r = await cli(resolved);
                assert.strictEqual(r.code, code, r.err);
                assert.match(r.err, message);
                assert.strictEqual(r.err.trim().split("\n").length, 1, "one line");
                assert.strictEqual(r.out, "");
            });
        }
    });

    describe("help", () => {
        for (const command of ["render", "schedule", "token", "explain"]) {
            it(`${command} --help prints its usage and exits 0`, async () => {
                for (const flag of ["--help", "-h"]) {
                    const r = await cli([command, flag]);
                    assert.strictEqual(r.code, EXIT.ok);
                    assert.match(r.out, new RegExp(`^usage: scaledkite ${command} `));
                    assert.strictEqual(r.err, "");
                }
            });
        }
        it("--help lists every command", async () => {
            const r = await cli(["--help"]);
            assert.strictEqual(r.code, EXIT.ok);
            for (const command of ["render", "schedule", "token", "explain"])
                assert.match(r.out, new RegExp(`scaledkite ${command} `));
        });
        it("runs as `npx scaledkite` (the package's bin), through a fast loader", function () {
            this.timeout(60_000);
            // A cache of its own: npx links a project's own bin into its cache once, and keeps that link when the bin moves.
            const cache = fs.mkdtempSync(path.join(os.tmpdir(), "scaledkite-npx-"));
            const r = spawnSync("npx", ["--no-install", "scaledkite", "render", "--event", SAMPLE_EVENT_FILE], {
                cwd: PROJECT_ROOT,
                encoding: "utf8",
                env: { ...process.env, npm_config_cache: cache },
            });
            fs.rmSync(cache, { recursive: true, force: true });
            assert.strictEqual(r.status, 0, r.stderr);
            assert.strictEqual(JSON.parse(r.stdout).kind, "Job");
        });
    });

    describe("token", () => {
        const env = {
            AWS_ACCESS_KEY_ID: "ASIAR2TG44V6AS3ZZE7C",
            AWS_SECRET_ACCESS_KEY: "4KD5cntGcVmLWRdF5wvNRuzNL5Qxmp6OKVY6Fz/Q",
        };
        it("prints an ExecCredential signed as of --at", async () => {
            const r = await cli(
                ["token", "--cluster", "test-cluster", "--region", "us-west-2", "--at", "2023-04-28T00:00:00Z"],
                { env },
            );
            assert.strictEqual(r.code, EXIT.ok, r.err);
            const cred = JSON.parse(r.out);
            assert.strictEqual(cred.status.expirationTimestamp, "2023-04-28T00:14:00Z");
            assert.ok(cred.status.token.endsWith("ZjVjZQ"), "aws-iam-authenticator's vector");
        });
        const bad: [string, string[], NodeJS.ProcessEnv, RegExp][] = [
            ["no cluster", ["token"], env, /--cluster NAME is required/],
            [
                "no region (a stack without aws:region)",
                ["token", "--cluster", "c", "--stack", "nope"],
                env,
                /no region: pass --region, set AWS_REGION, or set aws:region in the stack/,
            ],
            ["a bad region", ["token", "--cluster", "c", "--region", "moon"], env, /"moon" is not an AWS region/],
            [
                "a bad time",
                ["token", "--cluster", "c", "--region", "us-east-1", "--at", "yesterday"],
                env,
                /not an RFC 3339 time/,
            ],
            [
                "no credentials",
                ["token", "--cluster", "c", "--region", "us-east-1"],
                {
                    AWS_CONFIG_FILE: "/nonexistent",
                    AWS_SHARED_CREDENTIALS_FILE: "/nonexistent",
                    AWS_EC2_METADATA_DISABLED: "true",
                },
                /^no AWS credentials \(.*\): pass --profile or set AWS_PROFILE, run aws sso login, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n$/,
            ],
            [
                "an unknown profile",
                ["token", "--cluster", "c", "--region", "us-east-1", "--profile", "nope"],
                { AWS_CONFIG_FILE: "/nonexistent", AWS_SHARED_CREDENTIALS_FILE: "/nonexistent" },
                /^no AWS credentials for profile nope \(/,
            ],
        ];
        it("takes the region from the stack's aws:region, and credentials from a profile as the AWS SDK does", async () => {
            const dir = fs.mkdtempSync(path.join(os.tmpdir(), "scaledkite-aws-"));
            fs.writeFileSync(
                path.join(dir, "credentials"),
                `[ci]\naws_access_key_id = ${env.AWS_ACCESS_KEY_ID}\naws_secret_access_key = ${env.AWS_SECRET_ACCESS_KEY}\n`,
            );
            const files = {
                AWS_SHARED_CREDENTIALS_FILE: path.join(dir, "credentials"),
                AWS_CONFIG_FILE: path.join(dir, "config"),
            };
            const viaProfile = await cli(
                ["token", "--cluster", "test-cluster", "--profile", "ci", "--at", "2023-04-28T00:00:00Z"],
                { env: files },
            );
            const viaEnv = await cli(
                ["token", "--cluster", "test-cluster", "--region", "us-east-1", "--at", "2023-04-28T00:00:00Z"],
                { env },
            );
            fs.rmSync(dir, { recursive: true, force: true });
            assert.strictEqual(viaProfile.code, EXIT.ok, viaProfile.err);
            const token = (out: string) =>
                Buffer.from(JSON.parse(out).status.token.slice("k8s-aws-v1.".length), "base64url").toString();
            assert.match(
                token(viaProfile.out),
                /X-Amz-Credential=ASIAR2TG44V6AS3ZZE7C%2F20230428%2Fus-east-1%2Fsts/,
                "the dev stack's aws:region, the profile's key",
            );
            assert.strictEqual(viaProfile.out, viaEnv.out, "the same token as from the same keys in the environment");
        });
        for (const [name, args, e, message] of bad) {
            it(`refuses ${name}`, async () => {
                const r = await cli(args, { env: e });
                assert.strictEqual(r.code, EXIT.invalid);
                assert.match(r.err, message);
            });
        }
    });

    describe("schedule", function () {
        let kubeconfig: string;
        before(async function () {
            kubeconfig = (await localCluster(this)).kubeconfig;
        });

        it("says which kubeconfig is missing", async () => {
            const r = await cli(["schedule", "--event", SAMPLE_EVENT_FILE, "--kubeconfig", "/nonexistent/kubeconfig"]);
            assert.strictEqual(r.code, EXIT.invalid);
            assert.match(r.err, /no kubeconfig at \/nonexistent\/kubeconfig/);
        });

        it("creates the Job, then reports it exists, with the npm command and real exit codes", function () {
            this.timeout(60_000);
            // Its worker goes to the stand-in node: nothing here runs it, and it must not hold the real node's CPU.
            const config = tempFile(
                [
                    "config:",
                    "  scaledkite:cluster: local",
                    "  scaledkite:eventBusName: b",
                    "  scaledkite:namespace: default",
                    "  scaledkite:jobPrefix: cli-",
                    "  scaledkite:stepShape: none",
                    `  scaledkite:nodeSelector: {${STAND_IN_LABEL}: "true"}`,
                    `  scaledkite:tolerations: [{key: ${STAND_IN_LABEL}, operator: Exists, effect: NoSchedule}]`,
                    "",
                ].join("\n"),
                "Pulumi.cli.yaml",
            );
            const event = tempFile(JSON.stringify(anEvent().build()));
            const npm = (args: string[]) =>
                spawnSync("npm", ["run", "--silent", "scaledkite", "--", ...args], {
                    cwd: PROJECT_ROOT,
                    encoding: "utf8",
                });
            const first = npm(["schedule", "--event", event, "--kubeconfig", kubeconfig, "--config", config]);
            assert.strictEqual(first.status, 0, first.stderr);
            assert.match(first.stdout, /^created default\/cli-[0-9a-f-]{36}\n$/);
            const again = npm(["schedule", "--event", event, "--kubeconfig", kubeconfig, "--config", config]);
            assert.strictEqual(again.status, 0, again.stderr);
            assert.match(again.stdout, /^exists default\/cli-/);
            const broken = npm(["schedule", "--event", tempFile("[]"), "--kubeconfig", kubeconfig, "--config", config]);
            assert.strictEqual(broken.status, EXIT.invalid);
            assert.match(broken.stderr, /invalid event: event must be a JSON object, got an array/);
            assert.ok(!/\n\s+at /.test(broken.stderr), "no stack trace");
        });

        it("exits 1 (worth retrying) when the cluster cannot be reached", async () => {
            const port = await new Promise<number>((resolve) => {
                const s = require("net")
                    .createServer()
                    .listen(0, "127.0.0.1", () => {
                        const p = s.address().port;
                        s.close(() => resolve(p));
                    });
            });
            const dead = tempFile(
                [
                    "apiVersion: v1",
                    "kind: Config",
                    `clusters: [{name: c, cluster: {server: 'https://127.0.0.1:${port}', insecure-skip-tls-verify: true}}]`,
                    "users: [{name: u, user: {token: x}}]",
                    "contexts: [{name: c, context: {cluster: c, user: u}}]",
                    "current-context: c",
                    "",
                ].join("\n"),
                "kubeconfig",
            );
            const config = tempFile(
                [
                    "config:",
                    "  scaledkite:cluster: local",
                    "  scaledkite:eventBusName: b",
                    "  scaledkite:stepShape: none",
                    "",
                ].join("\n"),
                "Pulumi.cli.yaml",
            );
            const r = await cli(["schedule", "--event", SAMPLE_EVENT_FILE, "--kubeconfig", dead, "--config", config]);
            assert.strictEqual(r.code, EXIT.retry, r.err);
            assert.match(r.err, /cannot reach the Kubernetes API https:\/\/127.0.0.1:\d+ \(ECONNREFUSED\)/);
            assert.match(r.err, /; worth retrying: run the command again$/m);
            assert.doesNotMatch(r.err, /will retry/, "the command line retries nothing, so it promises nothing");
            assert.strictEqual(r.err.trim().split("\n").length, 1);
        });
    });
});
