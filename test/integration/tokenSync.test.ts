/**
 * The agent token from AWS Secrets Manager: the token sync Lambda exactly as Pulumi serializes it, in
 * a fresh Node process, reading a Secrets Manager stand-in (SigV4 verified) and writing the agent
 * token Secret on the real API server as its own EKS identity, under its own RBAC.
 */
import * as assert from "assert";
import * as fs from "fs";
import { LOCAL_REGION, SWEEPER_IDENTITY, TOKEN_SYNC_IDENTITY } from "../../k8s/local/awsIdentities";
import { type ClusterState } from "../../k8s/local/cluster";
import { bearerSecretReader, TOKEN_SOURCE_ANNOTATIONS } from "../../scheduler/clients/kube";
import { TokenCache, signEksToken } from "../../scheduler/clients/eksToken";
import { DEPLOY_TRIGGER } from "../../scheduler/tokenSync/lambda";
import { deleteNamespace, deployStack, type DeployedStack, kubeConfigAs } from "../helpers/deploy";
import { invokeLambda, writeLambdaPackage } from "../helpers/lambdaPackage";
import { adminConfig, k8sClient, localCluster } from "../helpers/localCluster";
import { lambdaCode } from "../helpers/pulumiProgram";
import {
    secretChangedEvent,
    type SecretsManagerStandIn,
    startSecretsManager,
    storedSecret,
} from "../helpers/secretsManagerStandIn";
import { LOCAL_CLUSTER_NAME } from "../../k8s/local/awsIdentities";
import { AGENT_TOKEN_KEY, SECRET_NAMES } from "../../scheduler/core/names";

const ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:buildkite/agent-token-AbC123";
const NAMESPACE = "token-sync";
const SCHEDULED = {
    source: "aws.events",
    "detail-type": "Scheduled Event",
    resources: ["arn:aws:events:us-east-1:000000000000:rule/x"],
    detail: {},
};

describe("the agent token from Secrets Manager (serialized sync Lambda, real API server)", function () {
    let state: ClusterState;
    let stack: DeployedStack;
    let sm: SecretsManagerStandIn;
    let dir: string;
    before(async function () {
        state = await localCluster(this);
        sm = await startSecretsManager([TOKEN_SYNC_IDENTITY]);
        sm.secrets.set(ARN, storedSecret("bkua_first_token_value", [TOKEN_SYNC_IDENTITY]));
        stack = await deployStack(state, NAMESPACE, { agentToken: null, agentTokenSecretArn: ARN });
        dir = writeLambdaPackage(await lambdaCode(stack.run, "token-sync-fn"));
    });
    after(async function () {
        if (sm) await sm.close();
        if (state) await deleteNamespace(state, NAMESPACE);
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    const sync = (events: unknown[], env: NodeJS.ProcessEnv = {}) =>
        invokeLambda(dir, events, {
            AWS_ACCESS_KEY_ID: TOKEN_SYNC_IDENTITY.accessKeyId,
            AWS_SECRET_ACCESS_KEY: TOKEN_SYNC_IDENTITY.secretAccessKey,
            AWS_SESSION_TOKEN: "local-session-token",
            AWS_REGION: LOCAL_REGION,
            AWS_ENDPOINT_URL_SECRETS_MANAGER: sm.endpoint,
            ...env,
        });
    const core = () => adminConfig(state).makeApiClient(k8sClient().CoreV1Api);
    async function agentTokenSecret() {
        const s = await core().readNamespacedSecret({ name: SECRET_NAMES.agentToken, namespace: NAMESPACE });
        return {
            token: s.data?.[AGENT_TOKEN_KEY] && Buffer.from(s.data[AGENT_TOKEN_KEY], "base64").toString(),
            annotations: s.metadata?.annotations ?? {},
        };
    }
    const outcomes = (logs: string[]) =>
        logs
            .map((l) => JSON.parse(l.slice(l.indexOf("{"))))
            .filter((d) => d.msg === "scaledkite.token-sync")
            .map((d) => d.outcome);

    it("pulumi up creates the Secret with no value: the token is not in the program's state", async () => {
        const s = await agentTokenSecret();
        assert.strictEqual(s.token, undefined);
        assert.strictEqual(s.annotations[TOKEN_SOURCE_ANNOTATIONS.source], ARN);
    });

    it("fills the Secret when pulumi up invokes it, then writes nothing while the value is the same", async () => {
        const { results, logs } = await sync([DEPLOY_TRIGGER, DEPLOY_TRIGGER, SCHEDULED]);
        assert.deepStrictEqual(
            results.map((r) => r.ok),
            [true, true, true],
            JSON.stringify(results),
        );
        assert.deepStrictEqual(outcomes(logs), ["updated", "unchanged", "unchanged"]);
        assert.deepStrictEqual(
            results.map((r) => r.value.trigger),
            ["deploy", "deploy", "schedule"],
        );
        const s = await agentTokenSecret();
        assert.strictEqual(s.token, "bkua_first_token_value");
        assert.strictEqual(s.annotations[TOKEN_SOURCE_ANNOTATIONS.version], sm.secrets.get(ARN)!.versionId);
        assert.ok(!logs.join("\n").includes("bkua_first_token_value"), "the token is never logged");
    });

    it("follows a rotation within one event, whichever way CloudTrail names the secret, and ignores other secrets", async () => {
        const version = sm.put(ARN, "bkua_rotated_token_value");
        const other = secretChangedEvent(
            "PutSecretValue",
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:someone-else-XyZ987",
        );
        const { results, logs } = await sync([
            other,
            secretChangedEvent("RotationSucceeded", ARN),
            secretChangedEvent("PutSecretValue", "buildkite/agent-token"),
            secretChangedEvent("UpdateSecretVersionStage", ARN.slice(0, -7)),
            secretChangedEvent("GetSecretValue", ARN),
        ]);
        assert.deepStrictEqual(outcomes(logs), ["ignored", "updated", "unchanged", "unchanged", "ignored"]);
        assert.ok(results.every((r) => r.ok));
        const s = await agentTokenSecret();
        assert.strictEqual(s.token, "bkua_rotated_token_value");
        assert.strictEqual(s.annotations[TOKEN_SOURCE_ANNOTATIONS.version], version);

        // The sweep, which reads the token from the Secret, now calls Buildkite with the new one.
        const tokens = new TokenCache(() => signEksToken(LOCAL_CLUSTER_NAME, LOCAL_REGION, SWEEPER_IDENTITY));
        const read = bearerSecretReader(
            state.server,
            fs.readFileSync(state.caFile).toString("base64"),
            tokens,
            NAMESPACE,
            SECRET_NAMES.agentToken,
            AGENT_TOKEN_KEY,
        );
        assert.strictEqual(await read(), "bkua_rotated_token_value");
    });

    it("fails with one line that names the problem and the fix, and leaves the Secret as it was", async () => {
        const before = await agentTokenSecret();
        const stored = sm.secrets.get(ARN)!;
        sm.secrets.delete(ARN);
        try {
            const gone = await sync([SCHEDULED]);
            assert.strictEqual(gone.results[0].ok, false);
            assert.strictEqual(gone.results[0].retryable, false);
            assert.match(
                gone.results[0].error!,
                /^reading arn:aws:secretsmanager:\S+ from Secrets Manager: no such secret.*check scaledkite:agentTokenSecretArn$/,
            );
        } finally {
            sm.secrets.set(ARN, stored);
        }
        stored.readers = [];
        try {
            const denied = await sync([SCHEDULED]);
            assert.match(denied.results[0].error!, /access denied .*resource policy$/);
        } finally {
            stored.readers = [TOKEN_SYNC_IDENTITY.accessKeyId];
        }
        sm.put(ARN, '{"token": "bkua_in_json"}');
        const json = await sync([SCHEDULED]);
        assert.match(json.results[0].error!, /holds a JSON object; set scaledkite:agentTokenSecretKey/);
        assert.ok(!json.results[0].error!.includes("bkua_in_json"), "the message never holds the value");
        const wrongKey = await sync([SCHEDULED], { AWS_SECRET_ACCESS_KEY: "not-the-sync-key" });
        assert.match(wrongKey.results[0].error!, /credentials were refused/);
        assert.deepStrictEqual(await agentTokenSecret(), before, "nothing was written");
        sm.put(ARN, "bkua_rotated_token_value");
    });

    it("retries what may pass (a throttled read) inside one invocation", async () => {
        sm.failNext("ThrottlingException", 1);
        const { results, logs } = await sync([SCHEDULED]);
        assert.strictEqual(results[0].ok, true, JSON.stringify(results));
        assert.deepStrictEqual(outcomes(logs), ["unchanged"]);
    });

    it("may read and update only the agent token Secret", async () => {
        await core().createNamespacedSecret({
            namespace: NAMESPACE,
            body: { metadata: { name: "someone-elses" }, stringData: { password: "p" } },
        });
        const asSync = (await kubeConfigAs(state, TOKEN_SYNC_IDENTITY)).makeApiClient(k8sClient().CoreV1Api);
        const status = async (call: () => Promise<unknown>) => {
            try {
                await call();
                return 200;
            } catch (e) {
                return (e as { code?: number }).code;
            }
        };
        assert.strictEqual(
            await status(() => asSync.readNamespacedSecret({ name: SECRET_NAMES.agentToken, namespace: NAMESPACE })),
            200,
        );
        assert.strictEqual(
            await status(() => asSync.readNamespacedSecret({ name: "someone-elses", namespace: NAMESPACE })),
            403,
        );
        assert.strictEqual(await status(() => asSync.listNamespacedSecret({ namespace: NAMESPACE })), 403);
        assert.strictEqual(
            await status(() =>
                asSync.createNamespacedSecret({ namespace: NAMESPACE, body: { metadata: { name: "new" } } }),
            ),
            403,
        );
        assert.strictEqual(
            await status(() => asSync.deleteNamespacedSecret({ name: SECRET_NAMES.agentToken, namespace: NAMESPACE })),
            403,
        );
        assert.strictEqual(await status(() => asSync.listNamespacedPod({ namespace: NAMESPACE })), 403);
    });
});
