/**
 * The local stand-in for EKS authentication: a token webhook for kube-apiserver that accepts the same
 * `k8s-aws-v1.` bearer tokens the Lambda sends to EKS, verifies their SigV4 signature against a small
 * table of local AWS identities (as STS would), and maps each identity to a user and groups (as an
 * EKS access entry does). So the Lambda code authenticates locally exactly as it does in AWS.
 */
import * as fs from "fs";
import { AwsCredentials, signEksToken, TokenCache, TOKEN_PREFIX } from "../../scheduler/eksToken";
import { bearerJobClient, JobClient } from "../../scheduler/kube";

/** The name the local cluster answers to in `x-k8s-aws-id`. */
export const LOCAL_CLUSTER_NAME = "scaledkite-local";
export const LOCAL_REGION = "us-east-1";

/** One local AWS identity and the Kubernetes user its access entry maps it to. */
export interface LocalIdentity extends AwsCredentials {
    username: string;
    groups: string[];
}

/** The scheduler's identity: the Lambda role's access entry puts it in the scheduler group. */
export const SCHEDULER_IDENTITY: LocalIdentity = {
    accessKeyId: "AKIALOCALSCHEDULER01",
    secretAccessKey: "local-scheduler-secret-key-not-a-real-one",
    username: "arn:aws:sts::000000000000:assumed-role/scaledkite-scheduler/lambda",
    groups: ["scaledkite:scheduler"],
};

/** The sweep's identity: its access entry puts it in the sweeper group. */
export const SWEEPER_IDENTITY: LocalIdentity = {
    accessKeyId: "AKIALOCALSWEEPER0001",
    secretAccessKey: "local-sweeper-secret-key-not-a-real-one",
    username: "arn:aws:sts::000000000000:assumed-role/scaledkite-sweep/lambda",
    groups: ["scaledkite:sweeper"],
};

/** An identity with no access entry groups: authenticated, allowed nothing. */
export const STRANGER_IDENTITY: LocalIdentity = {
    accessKeyId: "AKIALOCALSTRANGER001",
    secretAccessKey: "local-stranger-secret-key-not-a-real-one",
    username: "arn:aws:sts::000000000000:assumed-role/someone-else/session",
    groups: [],
};

export const LOCAL_IDENTITIES: LocalIdentity[] = [SCHEDULER_IDENTITY, SWEEPER_IDENTITY, STRANGER_IDENTITY];

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
export async function verifyEksToken(token: string, identities: LocalIdentity[], cluster = LOCAL_CLUSTER_NAME, now = new Date()):
    Promise<{ ok: true; identity: LocalIdentity } | { ok: false; reason: string }> {
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
    if (!(q.get("X-Amz-SignedHeaders") ?? "").split(";").includes("x-k8s-aws-id")) return { ok: false, reason: "x-k8s-aws-id is not signed" };
    const date = parseAmzDate(q.get("X-Amz-Date") ?? "");
    if (!date) return { ok: false, reason: "no X-Amz-Date" };
    if (now.getTime() - date.getTime() > TOKEN_VALIDITY_MS || date.getTime() - now.getTime() > 60_000) return { ok: false, reason: "token expired" };
    const accessKeyId = (q.get("X-Amz-Credential") ?? "").split("/")[0];
    const identity = identities.find((i) => i.accessKeyId === accessKeyId);
    if (!identity) return { ok: false, reason: `unknown access key ${accessKeyId}` };
    const expected = await signEksToken(cluster, region, { ...identity, sessionToken: q.get("X-Amz-Security-Token") ?? undefined }, date);
    if (expected.token !== token) return { ok: false, reason: "signature does not match (wrong key or another cluster's token)" };
    return { ok: true, identity };
}

/** The TokenReview answer kube-apiserver expects from an authentication webhook. */
export async function reviewToken(body: { spec?: { token?: string } }, identities: LocalIdentity[]): Promise<object> {
    const result = await verifyEksToken(body.spec?.token ?? "", identities);
    return {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenReview",
        status: result.ok
            ? { authenticated: true, user: { username: result.identity.username, uid: `aws-iam-authenticator:${result.identity.accessKeyId}`, groups: result.identity.groups } }
            : { authenticated: false, error: result.reason },
    };
}

/**
 * A JobClient for the local cluster that authenticates as the Lambda does in AWS: an EKS token
 * signed for `identity`, verified by the cluster's token webhook.
 */
export function localJobClient(server: string, caFile: string, identity: LocalIdentity = SCHEDULER_IDENTITY): JobClient {
    const tokens = new TokenCache(() => signEksToken(LOCAL_CLUSTER_NAME, LOCAL_REGION, identity));
    return bearerJobClient(server, fs.readFileSync(caFile).toString("base64"), tokens);
}
