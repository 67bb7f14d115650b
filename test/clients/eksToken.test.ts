import * as assert from "assert";
import { credentialsFromEnv, execCredential, signEksToken, TokenCache } from "../../scheduler/clients/eksToken";

// aws-iam-authenticator's published vector (pkg/token TestGetWithSTS): fake credentials, fixed time.
const VECTOR = {
    accessKeyId: Buffer.from("QVNJQVIyVEc0NFY2QVMzWlpFN0M=", "base64").toString(),
    secretAccessKey: Buffer.from("NEtENWNudEdjVm1MV1JkRjV3dk5SdXpOTDVReG1wNk9LVlk2RnovUQ==", "base64").toString(),
    cluster: "test-cluster",
    region: "us-west-2",
    at: new Date(1682640000 * 1000),
    token: "k8s-aws-v1.aHR0cHM6Ly9zdHMudXMtd2VzdC0yLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZGVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEEyNTYmWC1BbXotQ3JlZGVudGlhbD1BU0lBUjJURzQ0VjZBUzNaWkU3QyUyRjIwMjMwNDI4JTJGdXMtd2VzdC0yJTJGc3RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyMzA0MjhUMDAwMDAwWiZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZYLUFtei1TaWduYXR1cmU9ZTIxMWRiYTc3YWJhOWRjNDRiMGI2YmUzOGI4ZWFhZDA5MjU5OWM1MTU3ZjYzMTQ0NDRjNWI5ZDg1NzQ3ZjVjZQ",
};

describe("EKS tokens", () => {
    it("reproduces aws-iam-authenticator's test vector byte for byte", async () => {
        const t = await signEksToken(VECTOR.cluster, VECTOR.region, VECTOR, VECTOR.at);
        assert.strictEqual(t.token, VECTOR.token);
        assert.strictEqual(t.expiresAt.toISOString(), "2023-04-28T00:14:00.000Z");
    });

    it("signs the session token and the cluster header", async () => {
        const t = await signEksToken("prod", "eu-west-1", { ...VECTOR, sessionToken: "SESSION/TOKEN+" }, VECTOR.at);
        const url = new URL(Buffer.from(t.token.slice("k8s-aws-v1.".length), "base64url").toString());
        assert.strictEqual(url.hostname, "sts.eu-west-1.amazonaws.com");
        assert.strictEqual(url.searchParams.get("X-Amz-Security-Token"), "SESSION/TOKEN+");
        assert.strictEqual(url.searchParams.get("X-Amz-SignedHeaders"), "host;x-k8s-aws-id");
        assert.strictEqual(url.searchParams.get("X-Amz-Expires"), "60");
        assert.notStrictEqual(t.token, (await signEksToken("other", "eu-west-1", VECTOR, VECTOR.at)).token);
        assert.ok(!t.token.includes("="), "unpadded base64url");
    });

    it("prints an ExecCredential like aws eks get-token", async () => {
        const cred = execCredential(await signEksToken(VECTOR.cluster, VECTOR.region, VECTOR, VECTOR.at)) as any;
        assert.strictEqual(cred.kind, "ExecCredential");
        assert.strictEqual(cred.apiVersion, "client.authentication.k8s.io/v1beta1");
        assert.strictEqual(cred.status.expirationTimestamp, "2023-04-28T00:14:00Z");
    });

    it("reads credentials from the environment, or says which variables are missing", () => {
        assert.deepStrictEqual(
            credentialsFromEnv({ AWS_ACCESS_KEY_ID: "a", AWS_SECRET_ACCESS_KEY: "b", AWS_SESSION_TOKEN: "c" }),
            { accessKeyId: "a", secretAccessKey: "b", sessionToken: "c" },
        );
        assert.throws(() => credentialsFromEnv({}), /set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
    });

    describe("TokenCache", () => {
        it("signs once for concurrent callers and again only near expiry or after invalidate", async () => {
            let clock = 0;
            let signed = 0;
            const cache = new TokenCache(
                async () => {
                    signed++;
                    return { token: `t${signed}`, expiresAt: new Date(clock + 14 * 60_000) };
                },
                () => clock,
            );
            assert.deepStrictEqual(await Promise.all([cache.get(), cache.get(), cache.get()]), ["t1", "t1", "t1"]);
            clock = 13 * 60_000;
            assert.strictEqual(await cache.get(), "t1");
            clock = 14 * 60_000 - 29_000; // inside the 30 s margin
            assert.strictEqual(await cache.get(), "t2");
            cache.invalidate();
            assert.strictEqual(await cache.get(), "t3");
            assert.strictEqual(signed, 3);
        });
    });
});
