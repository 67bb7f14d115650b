/**
 * The Lambda's minimal Kubernetes client against a real HTTPS server that answers too slowly: every
 * call ends by its deadline (from the Lambda's remaining time) with a one-line, retryable error,
 * however the server trickles its bytes.
 */
import * as assert from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as https from "https";
import * as os from "os";
import * as path from "path";
import { isRetryable } from "../../scheduler/core/errors";
import { jobsApi, REQUEST_TIMEOUT_MS } from "../../scheduler/clients/jobsApi";
import { DEADLINE_MARGIN_MS, invocationDeadline } from "../../scheduler/clients/kube";

describe("jobsApi deadlines (a real HTTPS server that trickles)", function () {
    let server: https.Server;
    let url: string;
    let ca: string;
    let requests = 0;
    before(async function () {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "trickle-"));
        const made = spawnSync(
            "openssl",
            [
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                `${dir}/key.pem`,
                "-out",
                `${dir}/cert.pem`,
            ],
            { encoding: "utf8" },
        );
        if (made.status !== 0) throw new Error(`openssl: ${made.stderr}`);
        const cert = fs.readFileSync(`${dir}/cert.pem`);
        ca = cert.toString("base64");
        server = https.createServer({ cert, key: fs.readFileSync(`${dir}/key.pem`) }, (_req, res) => {
            requests++;
            // Headers at once, then one byte every 200 ms: an idle timeout never fires.
            res.writeHead(201, { "content-type": "application/json" });
            const t = setInterval(() => res.write(" "), 200);
            res.on("close", () => clearInterval(t));
        });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
        fs.rmSync(dir, { recursive: true, force: true });
    });
    after(async () => {
        server?.closeAllConnections();
        await new Promise((r) => server?.close(r));
    });

    const job = { metadata: { namespace: "ci", name: "w" } };

    it("ends a trickling call at the invocation's deadline, retryably, saying so", async () => {
        const started = Date.now();
        const api = jobsApi(url, ca, () => started + 1_500);
        const err = await api.create(job, "token").then(
            () => undefined,
            (e) => e as Error,
        );
        const took = Date.now() - started;
        assert.ok(err, "the call failed");
        assert.match(
            err!.message,
            /^creating Job ci\/w: no answer from the Kubernetes API https:\/\/127\.0\.0\.1:\d+ before this invocation's deadline \(\d+ ms were left of the Lambda's timeout\)$/,
        );
        assert.ok(isRetryable(err), "the event is retried later");
        assert.ok(took >= 1_400 && took < 3_000, `ended after ${took} ms`);
    });

    it("makes no call at all when the deadline has passed", async () => {
        const before = requests;
        const err = await jobsApi(url, ca, () => Date.now() - 1)
            .create(job, "token")
            .then(
                () => undefined,
                (e) => e as Error,
            );
        assert.match(err!.message, /before this invocation's deadline \(0 ms were left/);
        assert.strictEqual(requests, before);
    });

    it("the deadline comes from the Lambda's remaining time, less a margin to log and return", () => {
        const d = invocationDeadline();
        assert.strictEqual(d.get(), Infinity, "none before the first invocation (CLI, tests)");
        const now = Date.now();
        d.start({ getRemainingTimeInMillis: () => 5_000 });
        assert.ok(Math.abs(d.get() - (now + 5_000 - DEADLINE_MARGIN_MS)) < 100);
        assert.ok(REQUEST_TIMEOUT_MS > DEADLINE_MARGIN_MS);
    });
});
