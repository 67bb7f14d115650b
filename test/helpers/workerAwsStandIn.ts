/**
 * Local stand-ins for the AWS endpoints a worker pod's ECR login talks to, on one server (loopback,
 * or the pods' bridge address for a hook that runs in a real pod):
 * - the EKS Pod Identity agent (GET /v1/credentials, with the pod's token in Authorization);
 * - STS AssumeRoleWithWebIdentity for IRSA (POST /sts/, answers in XML as STS does);
 * - ECR GetAuthorizationToken (POST /ecr/, JSON 1.1), which verifies the SigV4 signature and the
 *   session token of the credentials it handed out, and knows which accounts the role may use.
 */
import * as http from "http";
import { type AddressInfo } from "net";
import { type LocalIdentity, verifySigV4Request } from "../../k8s/local/awsIdentities";

/** The temporary credentials of the workers' role, as Pod Identity or STS hand them out. */
export const WORKER_ROLE: LocalIdentity & { sessionToken: string } = {
    accessKeyId: "ASIALOCALWORKERROLE1",
    secretAccessKey: "local/worker+role/secret-key-not-a-real-one",
    sessionToken: "local-worker-session-token",
    username: "arn:aws:sts::000000000000:assumed-role/scaledkite-workers/pod",
    groups: [],
};

export interface WorkerAwsStandIn {
    url: string;
    /** The token Pod Identity expects in Authorization, and the IRSA web identity token. */
    podIdentityToken: string;
    webIdentityToken: string;
    roleArn: string;
    /** Accounts whose registries the role may log in to. */
    allowedAccounts: Set<string>;
    /** Requests as "METHOD /path [detail]". */
    requests: string[];
    /** The docker password ECR issues for an account and region. */
    password(account: string, region: string): string;
    close(): Promise<void>;
}

export async function startWorkerAws(host = "127.0.0.1"): Promise<WorkerAwsStandIn> {
    const requests: string[] = [];
    const allowedAccounts = new Set<string>();
    const podIdentityToken = "pod-identity-token-for-the-pod";
    const webIdentityToken = "eyJhbGciOiJSUzI1NiJ9.irsa-service-account-token";
    const roleArn = "arn:aws:iam::000000000000:role/scaledkite-workers";
    const password = (account: string, region: string) => `ecr-password-${account}-${region}`;

    const server = http.createServer((req, res) => {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => void handle());
        const handle = async () => {
            const path = new URL(req.url ?? "/", "http://x").pathname;
            const send = (status: number, type: string, text: string) => {
                res.writeHead(status, { "content-type": type });
                res.end(text);
            };
            const json = (status: number, obj: unknown) =>
                send(status, "application/x-amz-json-1.1", JSON.stringify(obj));
            if (req.method === "GET" && path === "/v1/credentials") {
                requests.push("GET /v1/credentials");
                if (req.headers.authorization !== podIdentityToken) return json(401, { message: "invalid token" });
                return json(200, {
                    AccessKeyId: WORKER_ROLE.accessKeyId,
                    SecretAccessKey: WORKER_ROLE.secretAccessKey,
                    Token: WORKER_ROLE.sessionToken,
                    AccountId: "000000000000",
                    Expiration: new Date(Date.now() + 3600_000).toISOString(),
                });
            }
            if (req.method === "POST" && path === "/sts/") {
                const form = new URLSearchParams(body);
                requests.push(`POST /sts/ ${form.get("Action")}`);
                const error = (code: string, message: string) =>
                    send(
                        400,
                        "text/xml",
                        `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error></ErrorResponse>`,
                    );
                if (form.get("Action") !== "AssumeRoleWithWebIdentity" || form.get("Version") !== "2011-06-15")
                    return error("InvalidAction", "unsupported action");
                if (form.get("WebIdentityToken") !== webIdentityToken)
                    return error(
                        "InvalidIdentityToken",
                        "Couldn't retrieve verification key from your identity provider",
                    );
                if (form.get("RoleArn") !== roleArn)
                    return error("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity");
                return send(
                    200,
                    "text/xml",
                    [
                        `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">`,
                        `  <AssumeRoleWithWebIdentityResult>`,
                        `    <Credentials>`,
                        `      <AccessKeyId>${WORKER_ROLE.accessKeyId}</AccessKeyId>`,
                        `      <SecretAccessKey>${WORKER_ROLE.secretAccessKey}</SecretAccessKey>`,
                        `      <SessionToken>${WORKER_ROLE.sessionToken}</SessionToken>`,
                        `      <Expiration>${new Date(Date.now() + 3600_000).toISOString()}</Expiration>`,
                        `    </Credentials>`,
                        `  </AssumeRoleWithWebIdentityResult>`,
                        `</AssumeRoleWithWebIdentityResponse>`,
                    ].join("\n"),
                );
            }
            if (req.method === "POST" && path === "/ecr/") {
                const verified = await verifySigV4Request(
                    { method: "POST", url: req.url ?? "/", headers: req.headers, body },
                    [WORKER_ROLE],
                );
                const error = (status: number, type: string, message: string) => {
                    requests.push(`POST /ecr/ ${type}`);
                    json(status, { __type: type, message });
                };
                if (!verified.ok) return error(403, "UnrecognizedClientException", verified.reason);
                if (verified.service !== "ecr")
                    return error(403, "InvalidSignatureException", `signed for ${verified.service}`);
                if (req.headers["x-amz-security-token"] !== WORKER_ROLE.sessionToken)
                    return error(
                        403,
                        "UnrecognizedClientException",
                        "The security token included in the request is invalid.",
                    );
                if (req.headers["x-amz-target"] !== "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")
                    return error(400, "UnknownOperationException", "only GetAuthorizationToken");
                const ids: string[] = JSON.parse(body || "{}").registryIds ?? [];
                requests.push(`POST /ecr/ ${verified.region} ${ids.join(",")}`);
                const denied = ids.filter((id) => !allowedAccounts.has(id));
                if (denied.length)
                    return error(
                        400,
                        "AccessDeniedException",
                        `User: ${WORKER_ROLE.username} is not authorized to perform: ecr:GetAuthorizationToken on resource: ${denied[0]}`,
                    );
                return json(200, {
                    authorizationData: ids.map((id) => ({
                        authorizationToken: Buffer.from(`AWS:${password(id, verified.region)}`).toString("base64"),
                        expiresAt: Date.now() / 1000 + 12 * 3600,
                        proxyEndpoint: `https://${id}.dkr.ecr.${verified.region}.amazonaws.com`,
                    })),
                });
            }
            requests.push(`${req.method} ${path} unknown`);
            send(404, "text/plain", "not here");
        };
    });
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    const url = `http://${host}:${(server.address() as AddressInfo).port}`;
    return {
        url,
        podIdentityToken,
        webIdentityToken,
        roleArn,
        allowedAccounts,
        requests,
        password,
        close: () =>
            new Promise<void>((resolve) => {
                server.closeAllConnections();
                server.close(() => resolve());
            }),
    };
}
