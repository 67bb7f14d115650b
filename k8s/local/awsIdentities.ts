/**
 * The local stand-in for EKS authentication: a token webhook for kube-apiserver that accepts the same
 * `k8s-aws-v1.` bearer tokens the Lambda sends to EKS, verifies their SigV4 signature against a small
 * table of local AWS identities (as STS would), and maps each identity to a user and groups (as an
 * EKS access entry does). So the Lambda code authenticates locally exactly as it does in AWS.
 */
import * as fs from "fs";
import { Hash } from "@smithy/hash-node";
import { SignatureV4 } from "@smithy/signature-v4";
import { type AwsCredentials, signEksToken, TokenCache, TOKEN_PREFIX } from "../../scheduler/clients/eksToken";
import { bearerJobClient, type JobClient } from "../../scheduler/clients/kube";

/** The name the local cluster answers to in `x-k8s-aws-id`. */
export const LOCAL_CLUSTER_NAME = "scaledkite-local";
export const LOCAL_REGION = "us-east-1";

/** One local AWS identity and the Kubernetes user its access entry maps it to. */
export interface LocalIdentity extends AwsCredentials {
    username: string;
    groups: string[];
}

/** A local identity; its keys are made from its name (the access key id is 20 characters, as AWS's are). */
function localIdentity(name: string, username: string, groups: string[]): LocalIdentity {
    const accessKeyId = `AKIALOCAL${name.replace(/-/g, "").toUpperCase()}`.padEnd(20, "0").slice(0, 20);
    return { accessKeyId, secretAccessKey: `local-${name}-secret-key-not-a-real-one`, username, groups };
}

/** The scheduler's identity: the Lambda role's access entry puts it in the scheduler group. */
export const SCHEDULER_IDENTITY = localIdentity(
    "scheduler",
    "arn:aws:sts::000000000000:assumed-role/scaledkite-scheduler/lambda",
    ["scaledkite:scheduler"],
);
/** The sweep's identity: its access entry puts it in the sweeper group. */
export const SWEEPER_IDENTITY = localIdentity(
    "sweeper",
    "arn:aws:sts::000000000000:assumed-role/scaledkite-sweep/lambda",
    ["scaledkite:sweeper"],
);
/** The token sync's identity: its access entry puts it in the token-sync group. */
export const TOKEN_SYNC_IDENTITY = localIdentity(
    "token-sync",
    "arn:aws:sts::000000000000:assumed-role/scaledkite-token-sync/lambda",
    ["scaledkite:token-sync"],
);
/** An identity with no access entry groups: authenticated, allowed nothing. */
export const STRANGER_IDENTITY = localIdentity(
    "stranger",
    "arn:aws:sts::000000000000:assumed-role/someone-else/session",
    [],
);

export const LOCAL_IDENTITIES: LocalIdentity[] = [
    SCHEDULER_IDENTITY,
    SWEEPER_IDENTITY,
    TOKEN_SYNC_IDENTITY,
    STRANGER_IDENTITY,
];

/** How long the API server accepts a token after its X-Amz-Date (as EKS does). */
const TOKEN_VALIDITY_MS = 15 * 60 * 1000;

function parseAmzDate(s: string): Date | undefined {
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    return m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : undefined;
}

/**
 * Verifies a bearer token; returns the identity it proves, or the reason it proves none.
 * The signature is checked by signing again with the identity's secret key and comparing.
 */
export async function verifyEksToken(
    token: string,
    identities: LocalIdentity[],
    cluster = LOCAL_CLUSTER_NAME,
    now = new Date(),
): Promise<{ ok: true; identity: LocalIdentity } | { ok: false; reason: string }> {
    if (!token.startsWith(TOKEN_PREFIX)) return { ok: false, reason: "not an EKS token" };
    let url: URL;
    try {
        url = new URL(Buffer.from(token.slice(TOKEN_PREFIX.length), "base64url").toString());
    } catch {
        return { ok: false, reason: "token does not hold a URL" };
    }
    const q = url.searchParams;
    const region = /^sts\.([a-z0-9-]+)\.amazonaws\.com$/.exec(url.hostname)?.[1];
    if (url.protocol !== "https:" || !region) return { ok: false, reason: `unexpected STS host ${url.hostname}` };
    if (q.get("Action") !== "GetCallerIdentity") return { ok: false, reason: "not a GetCallerIdentity request" };
    if (!(q.get("X-Amz-SignedHeaders") ?? "").split(";").includes("x-k8s-aws-id"))
        return { ok: false, reason: "x-k8s-aws-id is not signed" };
    const date = parseAmzDate(q.get("X-Amz-Date") ?? "");
    if (!date) return { ok: false, reason: "no X-Amz-Date" };
    if (now.getTime() - date.getTime() > TOKEN_VALIDITY_MS || date.getTime() - now.getTime() > 60_000)
        return { ok: false, reason: "token expired" };
    const accessKeyId = (q.get("X-Amz-Credential") ?? "").split("/")[0];
    const identity = identities.find((i) => i.accessKeyId === accessKeyId);
    if (!identity) return { ok: false, reason: `unknown access key ${accessKeyId}` };
    const expected = await signEksToken(
        cluster,
        region,
        { ...identity, sessionToken: q.get("X-Amz-Security-Token") ?? undefined },
        date,
    );
    if (expected.token !== token)
        return { ok: false, reason: "signature does not match (wrong key or another cluster's token)" };
    return { ok: true, identity };
}

/** A request as a local AWS service stand-in received it. */
export interface ReceivedRequest {
    method: string;
    /** Path and query as sent. */
    url: string;
    headers: Record<string, string | string[] | undefined>;
    body: string;
}

/**
 * Verifies a request signed with SigV4 in its Authorization header, as an AWS service does: the
 * credential's key must be known, the date fresh, and the signature equal to the one made again
 * from the signed headers with that key. Returns the identity, or why the request proves none.
 */
export async function verifySigV4Request(
    req: ReceivedRequest,
    identities: LocalIdentity[],
    now = new Date(),
): Promise<{ ok: true; identity: LocalIdentity; service: string; region: string } | { ok: false; reason: string }> {
    const auth = String(req.headers.authorization ?? "");
    const m =
        /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
            auth,
        );
    if (!m) return { ok: false, reason: "missing or malformed SigV4 Authorization header" };
    const [, accessKeyId, , region, service, signedHeaderList, signature] = m;
    const identity = identities.find((i) => i.accessKeyId === accessKeyId);
    if (!identity) return { ok: false, reason: `unknown access key ${accessKeyId}` };
    const date = parseAmzDate(String(req.headers["x-amz-date"] ?? ""));
    if (!date) return { ok: false, reason: "no X-Amz-Date" };
    if (Math.abs(now.getTime() - date.getTime()) > 5 * 60_000)
        return { ok: false, reason: "signature expired (X-Amz-Date more than 5 minutes off)" };
    const signed = signedHeaderList.split(";");
    for (const required of ["host", "x-amz-date"])
        if (!signed.includes(required)) return { ok: false, reason: `${required} is not signed` };
    const headers: Record<string, string> = {};
    for (const h of signed) headers[h] = String(req.headers[h] ?? "");
    const url = new URL(req.url, `http://${headers.host}`);
    const query: Record<string, string> = {};
    url.searchParams.forEach((v, k) => (query[k] = v));
    // A session token is either signed (as the SDKs do) or sent beside the signature (as curl does).
    const sessionToken = signed.includes("x-amz-security-token") ? headers["x-amz-security-token"] : undefined;
    const signer = new SignatureV4({
        service,
        region,
        credentials: { ...identity, sessionToken },
        sha256: Hash.bind(null, "sha256"),
        applyChecksum: false,
    });
    const again = await signer.sign(
        {
            method: req.method,
            protocol: "http:",
            hostname: url.hostname,
            path: url.pathname,
            query,
            headers,
            body: req.body,
        },
        { signingDate: date },
    );
    const expected = /Signature=([0-9a-f]{64})/.exec(String(again.headers.authorization))?.[1];
    if (expected !== signature)
        return {
            ok: false,
            reason: "the request signature does not match (wrong secret key, or the request was changed)",
        };
    return { ok: true, identity, service, region };
}

/** The TokenReview answer kube-apiserver expects from an authentication webhook. */
export async function reviewToken(body: { spec?: { token?: string } }, identities: LocalIdentity[]): Promise<object> {
    const result = await verifyEksToken(body.spec?.token ?? "", identities);
    return {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenReview",
        status: result.ok
            ? {
                  authenticated: true,
                  user: {
                      username: result.identity.username,
                      uid: `aws-iam-authenticator:${result.identity.accessKeyId}`,
                      groups: result.identity.groups,
                  },
              }
            : { authenticated: false, error: result.reason },
    };
}

/**
 * A JobClient for the local cluster that authenticates as the Lambda does in AWS: an EKS token
 * signed for `identity`, verified by the cluster's token webhook.
 */
export function localJobClient(
    server: string,
    caFile: string,
    identity: LocalIdentity = SCHEDULER_IDENTITY,
): JobClient {
    const tokens = new TokenCache(() => signEksToken(LOCAL_CLUSTER_NAME, LOCAL_REGION, identity));
    return bearerJobClient(server, fs.readFileSync(caFile).toString("base64"), tokens);
}
