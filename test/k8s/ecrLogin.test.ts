/**
 * The workers' ECR login hook, run for real (bash, curl's SigV4 signing, jq) against local stand-ins
 * for EKS Pod Identity, STS and ECR, which verify what AWS would: the pod's token, the web identity,
 * the request signature and the session token.
 */
import * as assert from "assert";
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ECR_LOGIN_SCRIPT } from "../../k8s/ecrLogin";
import { startWorkerAws, type WorkerAwsStandIn } from "../helpers/workerAwsStandIn";

const US = "111122223333.dkr.ecr.us-east-1.amazonaws.com";
const US_OTHER_ACCOUNT = "444455556666.dkr.ecr.us-east-1.amazonaws.com";
const EU = "111122223333.dkr.ecr.eu-west-1.amazonaws.com";

describe("the ECR login hook (bash, curl and jq, against AWS stand-ins)", () => {
    let aws: WorkerAwsStandIn;
    let dir: string;
    before(async () => {
        aws = await startWorkerAws();
    });
    after(async () => {
        if (aws) await aws.close();
    });
    beforeEach(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "scaledkite-ecr-"));
        aws.allowedAccounts.clear();
        aws.allowedAccounts.add("111122223333").add("444455556666");
        aws.requests.length = 0;
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** Runs the hook as the agent would, in a pod with the given AWS identity variables. */
    async function login(
        registries: string[],
        identity: Record<string, string>,
    ): Promise<{ status: number | null; stdout: string; stderr: string; auths: Record<string, { auth: string }> }> {
        fs.writeFileSync(path.join(dir, "ecr-registries"), registries.join("\n") + "\n");
        const child = spawn("bash", [ECR_LOGIN_SCRIPT], {
            env: {
                PATH: process.env.PATH,
                HOME: dir,
                DOCKER_CONFIG: path.join(dir, "docker"),
                SCALEDKITE_ECR_REGISTRIES_FILE: path.join(dir, "ecr-registries"),
                AWS_ENDPOINT_URL_ECR: `${aws.url}/ecr`,
                AWS_ENDPOINT_URL_STS: `${aws.url}/sts`,
                SCALEDKITE_SERVICE_ACCOUNT: "builder",
                ...identity,
            },
            stdio: ["ignore", "pipe", "pipe"],
        });
        const r = { status: null as number | null, stdout: "", stderr: "" };
        child.stdout.on("data", (c) => (r.stdout += c));
        child.stderr.on("data", (c) => (r.stderr += c));
        r.status = await new Promise<number | null>((resolve) => child.on("close", resolve));
        const configFile = path.join(dir, "docker", "config.json");
        const auths = fs.existsSync(configFile) ? (JSON.parse(fs.readFileSync(configFile, "utf8")).auths ?? {}) : {};
        return { status: r.status, stdout: r.stdout, stderr: r.stderr, auths };
    }
    function podIdentity(): Record<string, string> {
        fs.writeFileSync(path.join(dir, "pod-identity-token"), aws.podIdentityToken);
        return {
            AWS_CONTAINER_CREDENTIALS_FULL_URI: `${aws.url}/v1/credentials`,
            AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: path.join(dir, "pod-identity-token"),
        };
    }
    function irsa(roleArn = aws.roleArn): Record<string, string> {
        fs.writeFileSync(path.join(dir, "web-identity-token"), aws.webIdentityToken);
        return {
            AWS_ROLE_ARN: roleArn,
            AWS_WEB_IDENTITY_TOKEN_FILE: path.join(dir, "web-identity-token"),
            AWS_REGION: "us-east-1",
        };
    }
    const password = (auths: Record<string, { auth: string }>, host: string) =>
        Buffer.from(auths[host].auth, "base64").toString();

    it("logs docker in to every registry with Pod Identity credentials, one ECR call per region", async () => {
        const r = await login([US, US_OTHER_ACCOUNT, EU], podIdentity());
        assert.strictEqual(r.status, 0, r.stderr);
        assert.deepStrictEqual(Object.keys(r.auths).sort(), [US, US_OTHER_ACCOUNT, EU].sort());
        assert.strictEqual(password(r.auths, US), `AWS:${aws.password("111122223333", "us-east-1")}`);
        assert.strictEqual(password(r.auths, US_OTHER_ACCOUNT), `AWS:${aws.password("444455556666", "us-east-1")}`);
        assert.strictEqual(password(r.auths, EU), `AWS:${aws.password("111122223333", "eu-west-1")}`);
        assert.deepStrictEqual(aws.requests.filter((q) => q.startsWith("POST /ecr/")).sort(), [
            "POST /ecr/ eu-west-1 111122223333",
            "POST /ecr/ us-east-1 111122223333,444455556666",
        ]);
        assert.match(r.stdout, new RegExp(`docker is logged in to ${US.replace(/\./g, "\\.")} \\(until \\d{4}-`));
        assert.strictEqual(
            fs.statSync(path.join(dir, "docker", "config.json")).mode & 0o077,
            0,
            "the docker config is private",
        );
    });

    it("logs in with IRSA credentials from STS, and keeps what the docker config already held", async () => {
        fs.mkdirSync(path.join(dir, "docker"));
        fs.writeFileSync(
            path.join(dir, "docker", "config.json"),
            JSON.stringify({ auths: { "ghcr.io": { auth: "dXNlcjpwYXNz" } } }),
        );
        const r = await login([EU], irsa());
        assert.strictEqual(r.status, 0, r.stderr);
        assert.deepStrictEqual(Object.keys(r.auths).sort(), [EU, "ghcr.io"].sort());
        assert.ok(aws.requests.includes("POST /sts/ AssumeRoleWithWebIdentity"));
    });

    it("keeps the role's keys off curl's command line", () => {
        const script = fs.readFileSync(ECR_LOGIN_SCRIPT, "utf8");
        assert.match(script, /-K - /, "curl reads its keys from stdin");
        assert.ok(!/--user\s/.test(script));
    });

    const failures: [string, () => Record<string, string>, () => void, RegExp][] = [
        [
            "the role may not log in to an account",
            () => podIdentity(),
            () => aws.allowedAccounts.delete("444455556666"),
            /^scaledkite ecr-login: ECR in us-east-1 refused a login for accounts 111122223333 444455556666 \(400 AccessDeniedException: .*\); the workers' role needs ecr:GetAuthorizationToken/,
        ],
        [
            "Pod Identity refuses the pod's token",
            () => ({ ...podIdentity(), AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: "/dev/null" }),
            () => {},
            /^scaledkite ecr-login: EKS Pod Identity refused \(401 .*\); check the pod identity association/,
        ],
        [
            "STS refuses the role",
            () => irsa("arn:aws:iam::000000000000:role/another"),
            () => {},
            /^scaledkite ecr-login: STS refused the service account token for arn:aws:iam::000000000000:role\/another \(400 AccessDenied: .*\); check the role's trust policy/,
        ],
        [
            "the keys are wrong",
            () => ({
                AWS_ACCESS_KEY_ID: "ASIALOCALWORKERROLE1",
                AWS_SECRET_ACCESS_KEY: "wrong",
                AWS_SESSION_TOKEN: "local-worker-session-token",
            }),
            () => {},
            /^scaledkite ecr-login: ECR in us-east-1 refused .*\(403 UnrecognizedClientException: the request signature does not match/,
        ],
    ];
    for (const [name, identity, arrange, message] of failures) {
        it(`fails the job with one line when ${name}`, async () => {
            const env = identity();
            arrange();
            const r = await login([US, US_OTHER_ACCOUNT], env);
            assert.strictEqual(r.status, 1);
            const lines = r.stderr.trim().split("\n");
            assert.strictEqual(lines.length, 1, r.stderr);
            assert.match(lines[0], message);
            assert.ok(
                !r.stderr.includes(aws.password("111122223333", "us-east-1")) && !r.stderr.includes("secret-key"),
                "no secret in the message",
            );
        });
    }

    it("skips the login, with a warning, in a pod that has no AWS identity", async () => {
        const r = await login([US], {});
        assert.strictEqual(r.status, 0);
        assert.match(
            r.stderr,
            /no AWS identity in this pod \(service account builder\), so no ECR login; give the queue the scaledkite-worker service account/,
        );
        assert.deepStrictEqual(r.auths, {});
    });
});
