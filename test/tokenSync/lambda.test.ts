import * as assert from "assert";
import {
    classifySecretsManagerFailure,
    parseSecretArn,
    secretsManagerEndpoint,
} from "../../scheduler/clients/secretsManager";
import { agentTokenFrom, createTokenSync, DEPLOY_TRIGGER, syncTrigger } from "../../scheduler/tokenSync/lambda";
import type { TokenTarget } from "../../scheduler/clients/kube";
import { tokenSyncPolicy } from "../../scheduler/tokenSync/component";
import { secretChangedEvent } from "../helpers/secretsManagerStandIn";

const ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ci/buildkite-agent-token-AbC123";

describe("the agent token sync", () => {
    describe("syncTrigger", () => {
        const cases: [string, unknown, string][] = [
            ["the pulumi up invocation", DEPLOY_TRIGGER, "sync deploy"],
            ["the schedule", { source: "aws.events", "detail-type": "Scheduled Event" }, "sync schedule"],
            ["a rotation, by ARN", secretChangedEvent("RotationSucceeded", ARN), "sync secret-changed"],
            [
                "a new value, by name",
                secretChangedEvent("PutSecretValue", "ci/buildkite-agent-token"),
                "sync secret-changed",
            ],
            [
                "a stage moved, by partial ARN",
                secretChangedEvent("UpdateSecretVersionStage", ARN.slice(0, -7)),
                "sync secret-changed",
            ],
            [
                "another secret whose name starts the same",
                secretChangedEvent("PutSecretValue", "ci/buildkite-agent-token-old"),
                "ignored",
            ],
            [
                "another secret",
                secretChangedEvent(
                    "PutSecretValue",
                    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:other-XyZ987",
                ),
                "ignored",
            ],
            ["a read", secretChangedEvent("GetSecretValue", ARN), "ignored"],
            [
                "a change event naming no secret",
                { source: "aws.secretsmanager", detail: { eventName: "PutSecretValue" } },
                "ignored",
            ],
            ["a Buildkite event", { source: "aws.partner/buildkite.com/x", "detail-type": "Job Scheduled" }, "ignored"],
            ["not an object", "hello", "ignored"],
            ["null", null, "ignored"],
        ];
        for (const [name, event, expected] of cases) {
            it(name, () => {
                const v = syncTrigger(event, ARN);
                assert.strictEqual(v.action === "sync" ? `sync ${v.trigger}` : "ignored", expected);
            });
        }
    });

    describe("agentTokenFrom", () => {
        const ok: [string, string, string | undefined, string][] = [
            ["a plain token", "bkua_abc", undefined, "bkua_abc"],
            ["a token with a trailing newline", "bkua_abc\n", undefined, "bkua_abc"],
            ["a field of a JSON secret", '{"token":"bkua_abc","other":"x"}', "token", "bkua_abc"],
        ];
        for (const [name, value, key, token] of ok)
            it(`reads ${name}`, () => assert.strictEqual(agentTokenFrom(value, ARN, key), token));
        const bad: [string, string, string | undefined, RegExp][] = [
            ["an empty secret", "  ", undefined, /holds an empty agent token/],
            ["two words", "bkua_abc bkua_def", undefined, /does not hold one agent token/],
            [
                "a JSON secret without a key",
                '{"token":"bkua_abc"}',
                undefined,
                /set scaledkite:agentTokenSecretKey to the field/,
            ],
            [
                "a key for a secret that is not JSON",
                "bkua_abc",
                "token",
                /is not JSON, but scaledkite:agentTokenSecretKey is set/,
            ],
            ["a key the JSON lacks", '{"tok":"bkua_abc"}', "token", /has no string field "token"/],
        ];
        for (const [name, value, key, message] of bad) {
            it(`rejects ${name}, without echoing the value`, () => {
                assert.throws(
                    () => agentTokenFrom(value, ARN, key),
                    (e: Error & { retryable?: boolean }) => {
                        assert.match(e.message, message);
                        assert.ok(!e.message.includes("bkua_abc"));
                        assert.strictEqual(e.retryable, false);
                        return true;
                    },
                );
            });
        }
    });

    describe("classifySecretsManagerFailure", () => {
        const cases: [number, string, boolean, RegExp][] = [
            [400, "ResourceNotFoundException", false, /no such secret.*check scaledkite:agentTokenSecretArn/],
            [400, "AccessDeniedException", false, /access denied.*resource policy/],
            [400, "DecryptionFailure", false, /KMS key refused.*kms:Decrypt in the key policy/],
            [400, "InvalidRequestException", false, /scheduled for deletion/],
            [400, "com.amazonaws.secretsmanager#ThrottlingException", true, /answered ThrottlingException$/],
            [400, "ExpiredTokenException", true, /credentials were refused.*the next attempt takes fresh ones/],
            [
                400,
                "UnrecognizedClientException",
                false,
                /credentials were refused.*check the token sync function's role/,
            ],
            [500, "InternalServiceError", true, /answered InternalServiceError$/],
            [503, "", true, /answered 503$/],
            [418, "", false, /answered 418$/],
        ];
        for (const [status, type, retryable, message] of cases) {
            it(`${status} ${type || "(no type)"}`, () => {
                const e = classifySecretsManagerFailure(status, type, undefined, ARN);
                assert.strictEqual(e.retryable, retryable);
                assert.match(e.message, message);
                assert.ok(e.message.startsWith(`reading ${ARN} from Secrets Manager: `));
                assert.doesNotMatch(e.message, /will retry/, "the edge that retries says so, not the error");
            });
        }
    });

    it("parses secret ARNs and finds the regional endpoint", () => {
        assert.deepStrictEqual(parseSecretArn(ARN), {
            partition: "aws",
            region: "eu-west-1",
            account: "123456789012",
            name: "ci/buildkite-agent-token",
        });
        assert.strictEqual(parseSecretArn("ci/buildkite-agent-token"), undefined);
        assert.strictEqual(secretsManagerEndpoint("eu-west-1", {}), "https://secretsmanager.eu-west-1.amazonaws.com");
        assert.strictEqual(
            secretsManagerEndpoint("cn-north-1", {}),
            "https://secretsmanager.cn-north-1.amazonaws.com.cn",
        );
        assert.strictEqual(
            secretsManagerEndpoint("eu-west-1", { AWS_ENDPOINT_URL_SECRETS_MANAGER: "http://127.0.0.1:4566/" }),
            "http://127.0.0.1:4566",
        );
    });

    it("grants GetSecretValue on the one secret, and KMS decryption only through Secrets Manager for it", () => {
        const [logs, read, decrypt] = (
            tokenSyncPolicy("arn:aws:logs:eu-west-1:123456789012:log-group:x", ARN) as { Statement: any[] }
        ).Statement;
        assert.strictEqual(logs.Resource, "arn:aws:logs:eu-west-1:123456789012:log-group:x:*");
        assert.deepStrictEqual([read.Action, read.Resource], [["secretsmanager:GetSecretValue"], ARN]);
        assert.strictEqual(decrypt.Resource, "arn:aws:kms:eu-west-1:123456789012:key/*");
        assert.deepStrictEqual(decrypt.Condition.StringEquals, {
            "kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com",
            "kms:EncryptionContext:SecretARN": ARN,
        });
    });

    describe("createTokenSync", () => {
        /** A target in memory: what a Secret would hold. */
        function memoryTarget(initial?: string): TokenTarget & { value?: string; writes: number } {
            const t = {
                value: initial,
                writes: 0,
                where: "ns/secret",
                read: async () => t.value,
                write: async (v: string) => {
                    t.value = v;
                    t.writes++;
                },
            };
            return t;
        }
        const quiet = { log: () => {}, sleep: async () => {} };

        it("writes only when the value differs", async () => {
            const target = memoryTarget();
            let value = "bkua_one";
            const sync = createTokenSync(ARN, async () => ({ value, versionId: "v1" }), target, quiet);
            assert.strictEqual((await sync(DEPLOY_TRIGGER)).outcome, "updated");
            assert.strictEqual((await sync(DEPLOY_TRIGGER)).outcome, "unchanged");
            value = "bkua_two";
            assert.strictEqual((await sync(secretChangedEvent("RotationSucceeded", ARN))).outcome, "updated");
            assert.deepStrictEqual([target.value, target.writes], ["bkua_two", 2]);
        });

        it("retries what may pass, then gives up with the last reason", async () => {
            let calls = 0;
            const flaky = async () => {
                calls++;
                if (calls < 3) throw Object.assign(new Error("throttled; will retry"), { retryable: true });
                return { value: "bkua_one" };
            };
            assert.strictEqual(
                (await createTokenSync(ARN, flaky, memoryTarget(), quiet)(DEPLOY_TRIGGER)).outcome,
                "updated",
            );
            assert.strictEqual(calls, 3);
            calls = 0;
            const never = async () => {
                calls++;
                throw Object.assign(new Error("down; will retry"), { retryable: true });
            };
            await assert.rejects(
                createTokenSync(ARN, never, memoryTarget(), { ...quiet, attempts: 3 })(DEPLOY_TRIGGER),
                /down; will retry/,
            );
            assert.strictEqual(calls, 3);
        });

        it("does not retry what needs a change first", async () => {
            let calls = 0;
            const denied = async () => {
                calls++;
                throw Object.assign(new Error("access denied"), { retryable: false });
            };
            await assert.rejects(createTokenSync(ARN, denied, memoryTarget(), quiet)(DEPLOY_TRIGGER), (e: Error) => {
                assert.strictEqual(e.message, "access denied");
                assert.strictEqual(
                    e.stack,
                    "TokenSyncError: access denied",
                    "Lambda reports the stack: it is the one line",
                );
                assert.strictEqual(
                    (e as Error & { retryable?: boolean }).retryable,
                    false,
                    "whether a retry may help, as data",
                );
                return true;
            });
            assert.strictEqual(calls, 1);
        });

        it("logs one line per invocation, never the token", async () => {
            const lines: string[] = [];
            await createTokenSync(ARN, async () => ({ value: "bkua_secret_value" }), memoryTarget(), {
                log: (l) => lines.push(l),
            })(DEPLOY_TRIGGER);
            assert.strictEqual(lines.length, 1);
            assert.deepStrictEqual(Object.keys(JSON.parse(lines[0])).slice(0, 5), [
                "msg",
                "secret",
                "target",
                "outcome",
                "trigger",
            ]);
            assert.ok(!lines[0].includes("bkua_secret_value"));
        });
    });
});
