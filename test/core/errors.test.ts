import * as assert from "assert";
import {
    classifiedError,
    classifyApiFailure,
    classifyNetworkFailure,
    describeFailure,
    isQuotaFull,
    isRetryable,
    oneLine,
    RETRY_WORDS,
} from "../../scheduler/core/errors";

describe("failure classification", () => {
    const api: [number, string | undefined, string, boolean, RegExp][] = [
        [
            403,
            "Forbidden",
            'jobs.batch "x" is forbidden: exceeded quota: workers, requested: count/jobs.batch=1',
            true,
            /quota is full/,
        ],
        [
            403,
            "Forbidden",
            'jobs.batch is forbidden: User "u" cannot create resource',
            false,
            /check the scheduler's RBAC Role/,
        ],
        [401, "Unauthorized", "Unauthorized", true, /the next attempt signs a new one/],
        [404, "NotFound", 'namespaces "buildkite" not found', false, /run pulumi up/],
        [422, "Invalid", "Job.batch is invalid: spec.template...", false, /fix the worker settings/],
        [400, "BadRequest", "bad", false, /invalid/],
        [429, "TooManyRequests", "slow down", true, /throttling/],
        [500, "InternalError", "etcd", true, /answered 500 InternalError \(etcd\)$/],
        [503, "ServiceUnavailable", "", true, /answered 503 ServiceUnavailable$/],
        [418, undefined, "", false, /answered 418/],
    ];
    for (const [status, reason, message, retryable, text] of api) {
        it(`API ${status} ${message.slice(0, 30)} -> ${retryable ? "retry" : "no retry"}`, () => {
            const e = classifyApiFailure(status, { reason, message }, "creating Job ns/x");
            assert.strictEqual(e.retryable, retryable);
            assert.strictEqual(isRetryable(e), retryable);
            assert.match(e.message, text);
            assert.match(e.message, /^creating Job ns\/x: /);
            assert.ok(!e.message.includes("\n"));
            assert.doesNotMatch(e.message, /will retry/, "the edge that retries says so, not the error");
            assert.strictEqual(isQuotaFull(e), /quota is full/.test(e.message), "only a full quota is a full quota");
        });
    }
    const net: [unknown, boolean, RegExp][] = [
        [
            Object.assign(new Error("connect"), { code: "ECONNREFUSED" }),
            true,
            /cannot reach the Kubernetes API .*ECONNREFUSED/,
        ],
        [{ message: "fetch failed", cause: { code: "ENOTFOUND" } }, true, /ENOTFOUND/],
        [{ message: "x", code: "SELF_SIGNED_CERT_IN_CHAIN" }, false, /check the cluster CA/],
        [new Error("socket hang up\nstack"), true, /failed \(socket hang up\)/],
    ];
    for (const [err, retryable, text] of net) {
        it(`network ${(err as any).code ?? (err as any).cause?.code ?? (err as Error).message.split("\n")[0]}`, () => {
            const e = classifyNetworkFailure(err, "creating Job ns/x", "https://k8s");
            assert.strictEqual(e.retryable, retryable);
            assert.match(e.message, text);
            assert.ok(!e.message.includes("\n"));
        });
    }
    it("only errors that say so are retryable", () => {
        assert.strictEqual(isRetryable(new Error("x")), false);
        assert.strictEqual(isRetryable(null), false);
        assert.strictEqual(isRetryable({ retryable: "yes" }), false);
    });
});

describe("each edge says what happens to a failure", () => {
    const retryable = classifiedError(
        "stacks-api",
        "StacksApiError",
        "Buildkite Stacks API GET /x: 503 (down)\nmore",
        true,
    );
    const permanent = classifiedError("stacks-api", "StacksApiError", "Buildkite Stacks API GET /x: 401 (no)", false);
    const cases: [string, unknown, string, string][] = [
        [
            "the Lambdas, worth retrying",
            retryable,
            RETRY_WORDS.lambda,
            "Buildkite Stacks API GET /x: 503 (down); will retry",
        ],
        [
            "the sweep, worth retrying",
            retryable,
            RETRY_WORDS.sweep,
            "Buildkite Stacks API GET /x: 503 (down); the next sweep tries again",
        ],
        [
            "the command line, worth retrying",
            retryable,
            RETRY_WORDS.cli,
            "Buildkite Stacks API GET /x: 503 (down); worth retrying: run the command again",
        ],
        ["any edge, not worth retrying", permanent, RETRY_WORDS.lambda, "Buildkite Stacks API GET /x: 401 (no)"],
        ["a thrown string", "boom", RETRY_WORDS.sweep, "boom"],
    ];
    for (const [name, err, words, line] of cases) it(name, () => assert.strictEqual(describeFailure(err, words), line));

    it("a Lambda's thrown error reports the one line with the edge's words, and its message stays the error's own", () => {
        const e = oneLine(
            classifiedError("k8s", "KubernetesError", "creating Job a/b: API server answered 503", true),
            RETRY_WORDS.lambda,
        );
        assert.strictEqual(e.stack, "KubernetesError: creating Job a/b: API server answered 503; will retry");
        assert.strictEqual(e.message, "creating Job a/b: API server answered 503");
    });
});
