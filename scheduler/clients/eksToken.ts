/**
 * EKS bearer tokens, as `aws eks get-token` and aws-iam-authenticator make them: `k8s-aws-v1.` plus
 * the unpadded base64url of a presigned STS GetCallerIdentity URL whose signed headers include
 * `x-k8s-aws-id: <cluster>`. The API server accepts one for 15 minutes; it is cached for 14.
 */
import { Hash } from "@smithy/hash-node";
import { SignatureV4 } from "@smithy/signature-v4";

export const TOKEN_PREFIX = "k8s-aws-v1.";
/** How long a token is used before a new one is signed (the server accepts 15 minutes). */
export const TOKEN_LIFETIME_MS = 14 * 60 * 1000;

export interface AwsCredentials {
    accessKeyId: string;
    secretAccessKey: string;
    sessionToken?: string;
}

export interface EksToken {
    token: string;
    /** When the token should no longer be used. */
    expiresAt: Date;
}

/** Reads credentials from the standard environment variables (which the Lambda runtime sets). */
export function credentialsFromEnv(env: NodeJS.ProcessEnv = process.env): AwsCredentials {
    const accessKeyId = env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
    if (!accessKeyId || !secretAccessKey) {
        throw new Error(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)",
        );
    }
    return { accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN || undefined };
}

/** The regional STS host (the global endpoint is avoided, as current AWS tooling does). */
export function stsHost(region: string): string {
    return region.startsWith("cn-") ? `sts.${region}.amazonaws.com.cn` : `sts.${region}.amazonaws.com`;
}

/** Signs a token for `cluster` as of `now`. */
export async function signEksToken(
    cluster: string,
    region: string,
    credentials: AwsCredentials,
    now: Date = new Date(),
): Promise<EksToken> {
    const hostname = stsHost(region);
    const signer = new SignatureV4({
        service: "sts",
        region,
        credentials,
        sha256: Hash.bind(null, "sha256"),
        uriEscapePath: true,
    });
    const signed = await signer.presign(
        {
            method: "GET",
            protocol: "https:",
            hostname,
            path: "/",
            query: { Action: "GetCallerIdentity", Version: "2011-06-15" },
            headers: { host: hostname, "x-k8s-aws-id": cluster },
        },
        { expiresIn: 60, signingDate: now },
    );
    // Sorted parameters with the signature last, as aws-iam-authenticator writes them.
    const query = signed.query as Record<string, string>;
    const names = Object.keys(query)
        .filter((k) => k !== "X-Amz-Signature")
        .sort();
    names.push("X-Amz-Signature");
    const qs = names.map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(query[k])}`).join("&");
    const url = `https://${hostname}/?${qs}`;
    return {
        token: TOKEN_PREFIX + Buffer.from(url).toString("base64url"),
        expiresAt: new Date(now.getTime() + TOKEN_LIFETIME_MS),
    };
}

/** An ExecCredential document, the output of `aws eks get-token` that kubectl reads. */
export function execCredential(token: EksToken): object {
    return {
        kind: "ExecCredential",
        apiVersion: "client.authentication.k8s.io/v1beta1",
        spec: {},
        status: { expirationTimestamp: token.expiresAt.toISOString().replace(/\.\d{3}Z$/, "Z"), token: token.token },
    };
}

/**
 * Caches a token until shortly before it expires, so one token serves every event of a warm Lambda
 * container for 14 minutes. `invalidate()` drops it (after the API server answered 401).
 */
export class TokenCache {
    private current?: EksToken;
    private pending?: Promise<EksToken>;

    constructor(
        private readonly sign: () => Promise<EksToken>,
        private readonly now: () => number = Date.now,
        private readonly marginMs = 30_000,
    ) {}

    async get(): Promise<string> {
        if (this.current && this.current.expiresAt.getTime() - this.marginMs > this.now()) return this.current.token;
        // Concurrent callers share one signing.
        this.pending ??= this.sign().finally(() => {
            this.pending = undefined;
        });
        this.current = await this.pending;
        return this.current.token;
    }

    invalidate(): void {
        this.current = undefined;
    }
}
