/**
 * The agent token sync: keeps the workers' agent token Secret equal to the current value of an AWS
 * Secrets Manager secret (`scaledkite:agentTokenSecretArn`), so the token never passes through
 * Pulumi config or state.
 *
 * It runs on three triggers: once at `pulumi up` (so the Secret is filled before any worker needs
 * it), on Secrets Manager's CloudTrail events for that secret (rotation, a new value: within seconds),
 * and on a schedule (a change whose event never came). Every run reads the current value and writes
 * it only when it differs, so duplicate or late triggers are harmless.
 *
 * Pure decisions (which trigger is this, what is the token in the secret) and one sync function
 * over two small interfaces: where the value comes from and where it goes.
 */
import { classifiedError, type ClassifiedError, describeFailure, oneLine, RETRY_WORDS } from "../core/errors";
import { parseSecretArn, type SecretReader } from "../clients/secretsManager";
import type { TokenTarget } from "../clients/kube";
import { jsonLine, logLine } from "../clients/log";

/** Secrets Manager API calls and service events after which the current value may be new. */
export const SECRET_CHANGE_EVENTS = [
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "RotationSucceeded",
    "RestoreSecret",
];

/** The input `pulumi up` invokes the sync with. */
export const DEPLOY_TRIGGER = { source: "scaledkite.deploy" };

export type SyncTrigger = "deploy" | "schedule" | "secret-changed";

export type TriggerVerdict =
    { action: "sync"; trigger: SyncTrigger; eventName?: string } | { action: "ignored"; reason: string };

/**
 * Decides whether an invocation is one to sync on. CloudTrail events name the secret by ARN, by
 * partial ARN or by name; events of other secrets are ignored. Pure.
 */
export function syncTrigger(event: unknown, secretArn: string): TriggerVerdict {
    if (typeof event !== "object" || event === null || Array.isArray(event))
        return { action: "ignored", reason: "the event is not an object" };
    const e = event as {
        source?: unknown;
        "detail-type"?: unknown;
        detail?: {
            eventName?: unknown;
            requestParameters?: { secretId?: unknown };
            additionalEventData?: { SecretId?: unknown };
        };
    };
    if (e.source === DEPLOY_TRIGGER.source) return { action: "sync", trigger: "deploy" };
    if (e.source === "aws.events" && e["detail-type"] === "Scheduled Event")
        return { action: "sync", trigger: "schedule" };
    if (e.source !== "aws.secretsmanager")
        return { action: "ignored", reason: `events from ${JSON.stringify(e.source ?? null)} are not this function's` };
    const name = e.detail?.eventName;
    if (typeof name !== "string" || !SECRET_CHANGE_EVENTS.includes(name))
        return {
            action: "ignored",
            reason: `${JSON.stringify(name ?? null)} does not change a secret's current value`,
        };
    const id = e.detail?.requestParameters?.secretId ?? e.detail?.additionalEventData?.SecretId;
    if (typeof id !== "string") return { action: "ignored", reason: `the ${name} event names no secret` };
    if (!namesSecret(id, secretArn)) return { action: "ignored", reason: `${name} of another secret` };
    return { action: "sync", trigger: "secret-changed", eventName: name };
}

/** True when `id` (full ARN, partial ARN or name) names the secret `arn`. Pure. */
export function namesSecret(id: string, arn: string): boolean {
    const parsed = parseSecretArn(arn);
    if (!parsed) return id === arn;
    return id === arn || id === parsed.name || id === arn.slice(0, -7);
}

/** A problem with the secret's value: it needs a change, so retrying alone will not help. */
export function tokenValueError(message: string): ClassifiedError<"token-value"> {
    return classifiedError("token-value", "TokenValueError", message, false);
}

/**
 * The agent token in a secret string: the whole string, or with `jsonKey` one field of a JSON object.
 * Messages never include the value. Pure.
 */
export function agentTokenFrom(secretString: string, arn: string, jsonKey?: string): string {
    let token = secretString;
    if (jsonKey !== undefined) {
        let parsed: unknown;
        try {
            parsed = JSON.parse(secretString);
        } catch {
            throw tokenValueError(
                `${arn} is not JSON, but scaledkite:agentTokenSecretKey is set: remove the key (pulumi config rm scaledkite:agentTokenSecretKey) or store {"${jsonKey}": "<token>"}`,
            );
        }
        const field =
            typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
                ? (parsed as Record<string, unknown>)[jsonKey]
                : undefined;
        if (typeof field !== "string")
            throw tokenValueError(
                `${arn} has no string field ${JSON.stringify(jsonKey)}; set scaledkite:agentTokenSecretKey to the field that holds the agent token`,
            );
        token = field;
    } else if (/^\s*\{/.test(secretString)) {
        throw tokenValueError(
            `${arn} holds a JSON object; set scaledkite:agentTokenSecretKey to the field that holds the agent token`,
        );
    }
    token = token.trim();
    if (token === "") throw tokenValueError(`${arn} holds an empty agent token; put the Buildkite agent token in it`);
    if (/\s/.test(token))
        throw tokenValueError(
            `${arn} does not hold one agent token (it has spaces or line breaks); store only the token`,
        );
    return token;
}

export interface TokenSyncResult {
    outcome: "updated" | "unchanged" | "ignored";
    trigger?: SyncTrigger;
    reason?: string;
    versionId?: string;
}

export interface TokenSyncOptions {
    /** A field of a JSON secret that holds the token. */
    jsonKey?: string;
    /** Attempts for failures worth retrying (e.g. the access entry not yet in effect right after pulumi up). */
    attempts?: number;
    sleep?: (ms: number) => Promise<void>;
    log?: (line: string) => void;
}

/**
 * The sync: for an invocation it decides, reads the secret's current value, and writes it to the
 * target when it differs. One JSON log line per invocation says what it did and why (never the
 * token). Failures are thrown with a one-line message, so Lambda counts an error and the alarm fires.
 */
export function createTokenSync(
    arn: string,
    read: SecretReader,
    target: TokenTarget,
    opts: TokenSyncOptions = {},
): (event: unknown) => Promise<TokenSyncResult> {
    const log = opts.log ?? logLine;
    const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const attempts = opts.attempts ?? 4;
    const line = (fields: Record<string, unknown>) =>
        log(jsonLine({ msg: "scaledkite.token-sync", secret: arn, target: target.where, ...fields }));

    async function once(): Promise<{ outcome: "updated" | "unchanged"; versionId?: string }> {
        const version = await read();
        const token = agentTokenFrom(version.value, arn, opts.jsonKey);
        if ((await target.read()) === token) return { outcome: "unchanged", versionId: version.versionId };
        await target.write(token, { arn, versionId: version.versionId });
        return { outcome: "updated", versionId: version.versionId };
    }

    return async (event: unknown) => {
        const started = Date.now();
        const verdict = syncTrigger(event, arn);
        if (verdict.action === "ignored") {
            line({ outcome: "ignored", reason: verdict.reason });
            return { outcome: "ignored", reason: verdict.reason };
        }
        for (let attempt = 1; ; attempt++) {
            try {
                const done = await once();
                line({
                    outcome: done.outcome,
                    trigger: verdict.trigger,
                    event: verdict.eventName,
                    versionId: done.versionId,
                    ms: Date.now() - started,
                });
                return { ...done, trigger: verdict.trigger };
            } catch (e) {
                const retryable = (e as { retryable?: unknown }).retryable === true;
                const message = (e as Error).message?.split("\n")[0] ?? String(e);
                if (retryable && attempt < attempts) {
                    await sleep(1000 * 2 ** attempt);
                    continue;
                }
                line({
                    outcome: "failed",
                    trigger: verdict.trigger,
                    error: describeFailure(e, RETRY_WORDS.lambda),
                    retryable,
                    attempts: attempt,
                    ms: Date.now() - started,
                });
                throw oneLine(classifiedError("token-sync", "TokenSyncError", message, retryable), RETRY_WORDS.lambda);
            }
        }
    };
}
