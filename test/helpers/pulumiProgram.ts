/**
 * Runs the Pulumi program (index.ts) under Pulumi's mocks with a given stack configuration and
 * collects what it declares: every resource with its inputs, the stack outputs, and the Lambda's
 * serialized code.
 */
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";
import { SECRET_KEYS as CONFIG_SECRET_KEYS } from "../../scheduler/config/declaration";

export const PROJECT_ROOT = path.resolve(__dirname, "..", "..");

export interface DeclaredResource {
    type: string;
    name: string;
    inputs: Record<string, any>;
}

export interface ProgramRun {
    resources: DeclaredResource[];
    outputs: Record<string, unknown>;
    /** Outputs' secretness, by name. */
    secretOutputs: Set<string>;
    ofType(type: string): DeclaredResource[];
    one(type: string): DeclaredResource;
    named(type: string, name: string): DeclaredResource;
}

/** What the mocked AWS answers about the existing cluster. */
export const MOCK_CLUSTER = {
    endpoint: "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com",
    caData: Buffer.from("-----BEGIN CERTIFICATE-----\nMOCK\n-----END CERTIFICATE-----\n").toString("base64"),
    region: "us-east-1",
    account: "123456789012",
    oidcIssuer: "https://oidc.eks.us-east-1.amazonaws.com/id/ABCDEF0123456789",
};

/** A complete, valid configuration; tests override keys of it. */
export function baseConfig(): Record<string, string> {
    return {
        "scaledkite:cluster": "ci-cluster",
        "scaledkite:eventBusName": "aws.partner/buildkite.com/my-org/0106-187c-12cd4fe",
        "scaledkite:agentToken": "bk-agent-token-SECRET-VALUE",
    };
}

export const SECRET_KEYS = CONFIG_SECRET_KEYS.map((k) => `scaledkite:${k}`);

async function settle<T>(o: pulumi.Output<T>): Promise<{ value: T; secret: boolean }> {
    const secret = await (o as any).isSecret;
    const value = await new Promise<T>((resolve) =>
        o.apply((v) => {
            resolve(v);
            return v;
        }),
    );
    return { value, secret };
}

/** Forgets the project's own modules so the program runs again from scratch. */
function forgetProjectModules(): void {
    for (const file of Object.keys(require.cache)) {
        if (
            file.startsWith(PROJECT_ROOT) &&
            !file.includes(`${path.sep}node_modules${path.sep}`) &&
            !file.includes(`${path.sep}test${path.sep}`)
        ) {
            delete require.cache[file];
        }
    }
}

/** Runs index.ts with `config` (full keys, e.g. "scaledkite:cluster"). Rejects with the program's error. */
export async function runProgram(
    config: Record<string, string>,
    secretKeys: string[] = SECRET_KEYS,
    cluster: Partial<typeof MOCK_CLUSTER> = {},
): Promise<ProgramRun> {
    const resources: DeclaredResource[] = [];
    const mockCluster = { ...MOCK_CLUSTER, ...cluster };
    await pulumi.runtime.setMocks(
        {
            newResource(args: pulumi.runtime.MockResourceArgs) {
                resources.push({ type: args.type, name: args.name, inputs: args.inputs });
                const state: Record<string, any> = { ...args.inputs };
                const id = `${args.name}-id`;
                if (!state.name) state.name = `${args.name}-generated`;
                state.arn = `arn:aws:mock:${MOCK_CLUSTER.region}:${MOCK_CLUSTER.account}:${args.type}/${state.name}`;
                if (args.type === "aws:sqs/queue:Queue")
                    state.url = `https://sqs.${MOCK_CLUSTER.region}.amazonaws.com/${MOCK_CLUSTER.account}/${state.name}`;
                return { id, state };
            },
            call(args: pulumi.runtime.MockCallArgs) {
                switch (args.token) {
                    case "aws:eks/getCluster:getCluster":
                        return {
                            name: args.inputs.name,
                            endpoint: mockCluster.endpoint,
                            certificateAuthorities: [{ data: mockCluster.caData }],
                            accessConfigs: [{ authenticationMode: "API_AND_CONFIG_MAP" }],
                            identities: [{ oidcs: [{ issuer: MOCK_CLUSTER.oidcIssuer }] }],
                        };
                    case "aws:index/getCallerIdentity:getCallerIdentity":
                        return {
                            accountId: MOCK_CLUSTER.account,
                            arn: `arn:aws:iam::${MOCK_CLUSTER.account}:user/test`,
                            userId: "test",
                        };
                    case "aws:index/getPartition:getPartition":
                        return { partition: "aws", dnsSuffix: "amazonaws.com", id: "aws" };
                    case "aws:index/getRegion:getRegion":
                        return { name: mockCluster.region, region: mockCluster.region, id: mockCluster.region };
                    default:
                        return args.inputs;
                }
            },
        },
        "scaledkite",
        "test",
        false,
    );
    pulumi.runtime.setAllConfig(
        config,
        secretKeys.filter((k) => k in config),
    );
    forgetProjectModules();
    const program = require(path.join(PROJECT_ROOT, "index.ts")) as Record<string, unknown>;

    const outputs: Record<string, unknown> = {};
    const secretOutputs = new Set<string>();
    for (const [name, value] of Object.entries(program)) {
        if (pulumi.Output.isInstance(value)) {
            const s = await settle(value as pulumi.Output<unknown>);
            outputs[name] = s.value;
            if (s.secret) secretOutputs.add(name);
        } else {
            outputs[name] = value;
        }
    }
    // Let the remaining registrations (children created inside applies) finish.
    let seen = -1;
    while (seen !== resources.length) {
        seen = resources.length;
        await new Promise((r) => setTimeout(r, 50));
    }
    return {
        resources,
        outputs,
        secretOutputs,
        ofType: (type) => resources.filter((r) => r.type === type),
        named(type, name) {
            const found = resources.find((r) => r.type === type && r.name === name);
            if (!found) throw new Error(`no ${type} named ${name}`);
            return found;
        },
        one(type) {
            const found = resources.filter((r) => r.type === type);
            if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
            return found[0];
        },
    };
}

/** The text of the Lambda's serialized handler (`__index.js` of the function's code archive). */
export async function lambdaArchive(run: ProgramRun, name = "scheduler-fn"): Promise<Record<string, any>> {
    const fn = run.named("aws:lambda/function:Function", name);
    const code = fn.inputs.code;
    return (await code?.assets) ?? {};
}

/** The text of the Lambda's serialized handler (`__index.js` of the function's code archive). */
export async function lambdaCode(run: ProgramRun, name = "scheduler-fn"): Promise<string> {
    const assets = await lambdaArchive(run, name);
    const index = assets["__index.js"];
    const text = await (index?.text ?? index?.value);
    if (typeof text !== "string")
        throw new Error(`could not find __index.js in the Lambda's code: ${JSON.stringify(Object.keys(assets ?? {}))}`);
    return text;
}
