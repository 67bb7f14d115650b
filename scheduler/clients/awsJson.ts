/**
 * One signed call to an AWS JSON-protocol API (SQS, from the scheduler): SigV4 with the function's own
 * credentials, global `fetch`, and the signer the EKS token already loads, so the Lambdas gain no
 * SDK (the AWS SDK would add megabytes and a slower cold start for a request or two).
 */
import { Hash } from "@smithy/hash-node";
import { SignatureV4 } from "@smithy/signature-v4";
import type { AwsCredentials } from "./eksToken";
import { classifiedError } from "../core/errors";

/** What the service answered: the JSON body, and for an error its type and message. */
export interface AwsJsonAnswer {
    ok: boolean;
    status: number;
    body: Record<string, unknown>;
    errorType?: string;
    message?: string;
}

/**
 * The transport failed (no answer): `code` says how (ECONNREFUSED, TimeoutError, ...). A plain Error
 * with fields, as every error in Lambda code is (core/errors.ts): worth retrying.
 */
export function awsUnreachable(endpoint: string, code: string) {
    return classifiedError("aws", "AwsUnreachable", `cannot reach ${endpoint} (${code})`, true, { endpoint, code });
}

/**
 * A caller of one service at one endpoint. One signer per container; it asks for the credentials at
 * each signing, so rotated Lambda credentials are picked up. Throws awsUnreachable() when no answer came.
 */
export function awsJsonCaller(args: {
    service: string;
    region: string;
    endpoint: string;
    contentType: string;
    credentials: () => AwsCredentials;
}) {
    const endpoint = new URL(args.endpoint);
    const signer = new SignatureV4({
        service: args.service,
        region: args.region,
        credentials: async () => args.credentials(),
        sha256: Hash.bind(null, "sha256"),
    });
    return async (target: string, payload: object, timeoutMs = 10_000): Promise<AwsJsonAnswer> => {
        const body = JSON.stringify(payload);
        const signed = await signer.sign({
            method: "POST",
            protocol: endpoint.protocol,
            hostname: endpoint.hostname,
            port: endpoint.port ? Number(endpoint.port) : undefined,
            path: endpoint.pathname,
            headers: { host: endpoint.host, "content-type": args.contentType, "x-amz-target": target },
            body,
        });
        let res: Response;
        try {
            res = await fetch(endpoint, {
                method: "POST",
                headers: signed.headers as Record<string, string>,
                body,
                signal: AbortSignal.timeout(timeoutMs),
            });
        } catch (e) {
            throw awsUnreachable(
                endpoint.origin,
                (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name,
            );
        }
        const text = await res.text();
        let answer: Record<string, unknown>;
        try {
            answer = JSON.parse(text || "{}");
        } catch {
            answer = { message: text.slice(0, 200) };
        }
        const errorType = (answer.__type as string | undefined) ?? res.headers.get("x-amzn-errortype") ?? undefined;
        const message = (answer.message ?? answer.Message) as string | undefined;
        return {
            ok: res.ok,
            status: res.status,
            body: answer,
            errorType: res.ok ? undefined : errorType,
            message: res.ok ? undefined : message,
        };
    };
}
