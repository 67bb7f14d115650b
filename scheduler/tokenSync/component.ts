/**
 * The token sync's AWS side (when `scaledkite:agentTokenSecretArn` is set): a closure-serialized
 * Lambda with its own role (its logs, GetSecretValue on that one secret, and KMS decryption through
 * Secrets Manager for that secret only) and its own EKS access entry (group scaledkite:token-sync,
 * which may read and update the agent token Secret and nothing else). It runs once during
 * `pulumi up`, on the secret's change events, and on a schedule.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { credentialsFromEnv } from "../clients/eksToken";
import { bearerTokenTarget, type EksClusterAccess, eksTokens } from "../clients/kube";
import { type ClusterLambdaArgs, createClusterLambda, invokeOnRule, scheduleExpression } from "../aws/lambdaFunction";
import { parseSecretArn, secretsManagerReader } from "../clients/secretsManager";
import { createTokenSync, DEPLOY_TRIGGER, SECRET_CHANGE_EVENTS, type TokenSyncResult } from "./lambda";
import { AGENT_TOKEN_KEY, SECRET_NAMES } from "../core/names";

/** Arguments of TokenSyncer. */
export interface TokenSyncerArgs extends ClusterLambdaArgs {
    /** The Secrets Manager secret that holds the agent token. */
    secretArn: string;
    /** The field of a JSON secret that holds the token (absent: the whole string). */
    jsonKey?: string;
    /** Minutes between scheduled syncs (the safety net for a change whose event never came). */
    intervalMinutes: number;
    /** The workers' namespace, where the agent token Secret is. */
    namespace: string;
    /** The agent token Secret's uid: a new Secret gets a new sync during pulumi up. */
    targetUid?: pulumi.Input<string>;
}

/**
 * The rule's pattern: Secrets Manager calls and service events that may change a secret's current
 * value. Events of other secrets in the account also match (CloudTrail names a secret by ARN, partial
 * ARN or name); the function ignores them. Pure.
 */
export function secretChangePattern(): Record<string, unknown> {
    return {
        source: ["aws.secretsmanager"],
        "detail-type": ["AWS API Call via CloudTrail", "AWS Service Event via CloudTrail"],
        detail: { eventSource: ["secretsmanager.amazonaws.com"], eventName: SECRET_CHANGE_EVENTS },
    };
}

/** The sync role's only permissions. Pure. */
export function tokenSyncPolicy(logGroupArn: string, secretArn: string): object {
    const arn = parseSecretArn(secretArn);
    const region = arn?.region ?? "*";
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "WriteLogs",
                Effect: "Allow",
                Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
                Resource: `${logGroupArn}:*`,
            },
            { Sid: "ReadAgentToken", Effect: "Allow", Action: ["secretsmanager:GetSecretValue"], Resource: secretArn },
            {
                // A customer-managed key: decrypt through Secrets Manager, for this secret only.
                Sid: "DecryptAgentToken",
                Effect: "Allow",
                Action: ["kms:Decrypt"],
                Resource: `arn:${arn?.partition ?? "aws"}:kms:${region}:${arn?.account ?? "*"}:key/*`,
                Condition: {
                    StringEquals: {
                        "kms:ViaService": `secretsmanager.${region}.amazonaws.com`,
                        "kms:EncryptionContext:SecretARN": secretArn,
                    },
                },
            },
        ],
    };
}

export class TokenSyncer extends pulumi.ComponentResource {
    readonly functionName: pulumi.Output<string>;
    /** What the sync during pulumi up did (e.g. {"outcome":"updated",...}); never the token. */
    readonly deploySync: pulumi.Output<string>;

    constructor(name: string, args: TokenSyncerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("scaledkite:scheduler:TokenSyncer", name, {}, opts);
        const parent = { parent: this };
        const { fn, access } = createClusterLambda<TokenSyncResult>(
            name,
            {
                ...args,
                roleDescription:
                    "Scaledkite token sync Lambda: reads the agent token secret; Kubernetes access comes from its EKS access entry",
                policy: (l) => tokenSyncPolicy(l, args.secretArn),
                description: "Scaledkite: keeps the agent token Secret equal to its Secrets Manager secret",
                memoryMb: 128,
                timeoutSeconds: 60,
                factory: tokenSyncFactory(args),
            },
            parent,
        );

        const onChange = new aws.cloudwatch.EventRule(
            `${name}-secret-changed`,
            {
                description: `Scaledkite: sync the agent token when ${args.secretArn} changes`,
                eventPattern: JSON.stringify(secretChangePattern()),
            },
            parent,
        );
        const schedule = new aws.cloudwatch.EventRule(
            `${name}-schedule`,
            {
                description: `Scaledkite: sync the agent token from ${args.secretArn} (${scheduleExpression(args.intervalMinutes)})`,
                scheduleExpression: scheduleExpression(args.intervalMinutes),
            },
            parent,
        );
        for (const [rule, suffix] of [
            [onChange, "secret-changed"],
            [schedule, "schedule"],
        ] as const) {
            invokeOnRule(
                rule,
                fn,
                { permission: `${name}-${suffix}-invoke`, target: `${name}-${suffix}-target` },
                parent,
                { maximumRetryAttempts: 10, maximumEventAgeInSeconds: 3600 },
            );
        }

        // Fill the Secret now, so the first worker after pulumi up already has the token. A failure
        // fails pulumi up with the sync's one-line reason.
        const deploy = new aws.lambda.Invocation(
            `${name}-now`,
            {
                functionName: fn.name,
                input: JSON.stringify(DEPLOY_TRIGGER),
                triggers: {
                    secretArn: args.secretArn,
                    jsonKey: args.jsonKey ?? "",
                    target: pulumi.output(args.targetUid ?? ""),
                },
            },
            { ...parent, dependsOn: [access] },
        );

        this.functionName = fn.name;
        this.deploySync = deploy.result;
        this.registerOutputs({ functionName: this.functionName, deploySync: this.deploySync });
    }
}

/** The sync Lambda's clients, built once per container (serialized with the values it captures); it returns one sync per invocation. */
function tokenSyncFactory(
    args: TokenSyncerArgs,
): (cluster: EksClusterAccess) => (event: unknown) => Promise<TokenSyncResult> {
    const { secretArn, jsonKey, namespace } = args;
    return (cluster) => {
        const target = bearerTokenTarget(
            cluster.endpoint,
            cluster.caData,
            eksTokens(cluster),
            namespace,
            SECRET_NAMES.agentToken,
            AGENT_TOKEN_KEY,
        );
        return createTokenSync(
            secretArn,
            secretsManagerReader(secretArn, () => credentialsFromEnv()),
            target,
            { jsonKey },
        );
    };
}
