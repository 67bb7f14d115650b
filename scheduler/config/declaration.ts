/**
 * Every setting of the stack (`pulumi config set scaledkite:<key>`), declared once: its name, type,
 * default, bounds or allowed values, where it may be set, how a queue's value meets the stack's, an
 * example that works, and what it does. The parser (config.ts) reads bounds, defaults and allowed
 * values from here and says them in its messages; the README's configuration table and the typed
 * `config:` block of Pulumi.yaml are rendered from here (`npm run docs` writes both), and a test fails
 * when either differs. Pure, deploy-time only.
 */
import { DEFAULT_AGENT_ENDPOINT } from "../clients/stacksApi";

export const DEFAULT_IMAGE = "buildkite/agent:3.138.3";
export const DEFAULT_DIND_IMAGE = "docker:28.5.2-dind";
/** The stock rootless variant at the same version: dockerd as uid 1000 inside rootlesskit. */
export const DEFAULT_DIND_ROOTLESS_IMAGE = "docker:28.5.2-dind-rootless";
/** The scheduler Lambda's memory by default (see the bench's memory phase). */
export const DEFAULT_LAMBDA_MEMORY_MB = 512;
/** The shortest Lambda timeout: one whole Kubernetes call (jobsApi's REQUEST_TIMEOUT_MS, 10 s) and time to log and return. */
export const MIN_LAMBDA_TIMEOUT_SECONDS = 12;

/** One setting. */
export interface Setting {
    key: string;
    /** How the value is read: "json" is a map or list, as YAML or as JSON text. */
    type: "string" | "integer" | "boolean" | "json";
    /** "stack": stack-wide only; "worker": stack-wide and per queue (in `queues.<name>`). */
    scope: "stack" | "worker";
    required?: true;
    /** Only its presence is read by the parser; `pulumi config set --secret`. */
    secret?: true;
    /** The value when the key is absent, where it is one plain value. */
    default?: string | number | boolean;
    /** How the default reads in the README when it is not one plain value. */
    defaultText?: string;
    /** Bounds of an integer. */
    min?: number;
    max?: number;
    /** The values a string may take. */
    values?: readonly string[];
    /** Worker keys: how a queue's value meets the stack-wide one. */
    merge?: "map" | "list" | "replace";
    /** A value that works, as `pulumi config set` takes it (JSON for maps and lists). */
    example: string;
    /** How the README shows the example, where the command line says it better than the value. */
    exampleText?: string;
    /** What the example needs beside it to make a valid stack. */
    exampleWith?: Record<string, unknown>;
    description: string;
}

export const SETTINGS: readonly Setting[] = [
    {
        key: "cluster", type: "string", scope: "stack", required: true,
        example: "ci-cluster",
        description: "The existing EKS cluster. Its endpoint and CA are read at deploy time.",
    },
    {
        key: "eventBusName", type: "string", scope: "stack", required: true,
        example: "aws.partner/buildkite.com/my-org/0106b3c9-8a5e-4a3c-9c41-2f1f5b0e7a11",
        description: "The Buildkite partner event bus the rule listens on.",
    },
    {
        key: "agentToken", type: "string", scope: "stack", secret: true, defaultText: "required (or `agentTokenSecretArn`)",
        example: "bkua_0123456789abcdef",
        description: "The Buildkite agent token, stored in Secret `scaledkite-agent-token`.",
    },
    {
        key: "agentTokenSecretArn", type: "string", scope: "stack",
        example: "arn:aws:secretsmanager:us-east-1:123456789012:secret:ci/bk-token-AbC123",
        description: "Take the agent token from this AWS Secrets Manager secret instead of `agentToken` (see [Secrets](#secrets)).",
    },
    {
        key: "agentTokenSecretKey", type: "string", scope: "stack",
        example: "token", exampleWith: { agentTokenSecretArn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:ci/bk-token-AbC123" },
        description: "For a JSON secret: the field that holds the token.",
    },
    {
        key: "tokenSyncInterval", type: "integer", scope: "stack", default: 5, min: 1, max: 60,
        example: "15", exampleWith: { agentTokenSecretArn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:ci/bk-token-AbC123" },
        description: "Minutes between scheduled token syncs (the safety net for a change whose event never came).",
    },
    {
        key: "ecrRegistries", type: "json", scope: "stack",
        example: "[\"123456789012.dkr.ecr.us-east-1.amazonaws.com\", {\"registry\":\"210987654321.dkr.ecr.eu-west-1.amazonaws.com\",\"push\":true,\"repositories\":[\"ci/*\"]}]",
        description: "ECR registries (any accounts and regions) `docker` in every worker is logged in to before each job, with the workers' own IAM role (see [ECR](#ecr)). Pull only unless `push: true`; every repository unless `repositories` lists names or patterns.",
    },
    {
        key: "workerIdentity", type: "string", scope: "stack", default: "podIdentity", values: ["podIdentity", "irsa"],
        example: "irsa", exampleWith: { ecrRegistries: ["123456789012.dkr.ecr.us-east-1.amazonaws.com"] },
        description: "How the workers' role reaches their pods: EKS Pod Identity (needs the `eks-pod-identity-agent` add-on) or IRSA (needs the cluster's IAM OIDC provider; the only one that works on Fargate).",
    },
    {
        key: "env", type: "json", scope: "worker", secret: true, merge: "map",
        example: "{\"GITHUB_TOKEN\":\"ghp_0123456789\",\"DOCKER_LOGIN_USER\":\"ci\"}",
        description: "Extra env vars for every worker, from Secret `scaledkite-env` (`envFrom`).",
    },
    {
        key: "gitCredentials", type: "string", scope: "stack", secret: true,
        example: "https://x-access-token:ghs_0123456789@github.com",
        description: "A git-credentials file (HTTPS clones), mounted read-only and read by a credential helper that answers only `get`.",
    },
    {
        key: "gitSshKey", type: "string", scope: "stack", secret: true,
        example: "-----BEGIN OPENSSH PRIVATE KEY-----", exampleText: "--secret < ~/.ssh/ci_key", exampleWith: { gitKnownHosts: "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl" },
        description: "A private key for git over SSH, mounted read-only; `GIT_SSH_COMMAND` uses it. Needs `gitKnownHosts`.",
    },
    {
        key: "gitKnownHosts", type: "string", scope: "stack",
        example: "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        description: "The host keys git over SSH trusts (strict checking, no trust on first use).",
    },
    {
        key: "hooks", type: "json", scope: "stack",
        example: "{\"environment\":\"#!/bin/sh\\nexport A=1\\n\"}",
        description: "Agent hooks (file name → script) in ConfigMap `scaledkite-hooks`, mounted executable at the agent's hooks path: no custom image.",
    },
    {
        key: "fargateSubnetIds", type: "json", scope: "stack",
        example: "[\"subnet-0abc1234\"]",
        description: "Private subnets for the Fargate profiles of `fargate: true` queues.",
    },
    {
        key: "namespace", type: "string", scope: "stack", default: "buildkite",
        example: "ci-workers",
        description: "Namespace of the workers, their Secrets and the scheduler's Role (created).",
    },
    {
        key: "jobPrefix", type: "string", scope: "stack", default: "buildkite-agent-",
        example: "bk-",
        description: "Job name prefix; the name is `<jobPrefix><job uuid>`, so at most 27 characters.",
    },
    {
        key: "queues", type: "json", scope: "stack", defaultText: "`{\"dynamic\":{}}`",
        example: "{\"dynamic\":{},\"big\":{\"resources\":{\"command\":{\"requests\":{\"cpu\":\"4\"}}}}}",
        description: "Queues served, each with settings that override the worker defaults below (`{}` inherits them all). A job without a `queue=` rule is in queue `default`.",
    },
    {
        key: "image", type: "string", scope: "worker", default: DEFAULT_IMAGE, merge: "replace",
        example: "buildkite/agent:3.138.3-ubuntu-24.04",
        description: "The image of both the agent and the command container; the stock one works, no custom image needed (a custom one needs `sh`, `jq` and `buildkite-agent` ≥ 3.138).",
    },
    {
        key: "dind", type: "string", scope: "worker", default: "privileged", values: ["privileged", "rootless", "none"], merge: "replace",
        example: "rootless",
        description: "Docker-in-docker as a native sidecar on a shared unix socket; `DOCKER_HOST` points the command container at it. `privileged`: dockerd as root; `rootless`: dockerd as uid 1000 in a user namespace (see Security model); `none`: no sidecar. `true` and `false` mean `privileged` and `none`.",
    },
    {
        key: "dindImage", type: "string", scope: "worker", defaultText: `\`${DEFAULT_DIND_IMAGE}\`; with \`rootless\`, \`${DEFAULT_DIND_ROOTLESS_IMAGE}\``, merge: "replace",
        example: "docker:28-dind",
        description: "The sidecar's image. A queue's own value wins; the stack-wide value applies to queues in the stack-wide `dind` mode, so a queue switched to another mode gets that mode's stock image.",
    },
    {
        key: "resources", type: "json", scope: "worker", defaultText: "agent 100m CPU / 128Mi; command and dind 500m / 1Gi each", merge: "map",
        example: "{\"command\":{\"requests\":{\"cpu\":\"1\"},\"limits\":{\"memory\":\"4Gi\"}},\"dind\":{\"requests\":{\"cpu\":\"1\",\"memory\":\"2Gi\"}}}",
        description: "Requests and limits of the `agent` container (buildkite-agent, which only coordinates), the `command` container (the build) and the dind sidecar.",
    },
    {
        key: "nodeSelector", type: "json", scope: "worker", merge: "map",
        example: "{\"pool\":\"ci\"}",
        description: "Node selector of worker pods.",
    },
    {
        key: "tolerations", type: "json", scope: "worker", merge: "list",
        example: "[{\"key\":\"ci\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}]",
        description: "Tolerations of worker pods.",
    },
    {
        key: "agentTags", type: "json", scope: "worker", merge: "list",
        example: "[\"os=linux\"]",
        description: "Extra agent tags. `queue=<queue>` and the job's own literal rules are always added, so the agent can acquire the job.",
    },
    {
        key: "labels", type: "json", scope: "worker", merge: "map",
        example: "{\"team\":\"platform\"}",
        description: "Extra labels on Jobs and pods.",
    },
    {
        key: "annotations", type: "json", scope: "worker", merge: "map",
        example: "{\"example.com/cost-centre\":\"ci\"}",
        description: "Extra annotations on Jobs and pods.",
    },
    {
        key: "activeDeadlineSeconds", type: "integer", scope: "worker", default: 10800, min: 60, max: 604800, merge: "replace",
        example: "3600",
        description: "A worker is stopped after this long.",
    },
    {
        key: "ttlSecondsAfterFinished", type: "integer", scope: "worker", default: 600, min: 0, max: 604800, merge: "replace",
        example: "60",
        description: "A finished Job and its pod are kept this long for inspection, then deleted.",
    },
    {
        key: "backoffLimit", type: "integer", scope: "worker", default: 1, min: 0, max: 6, merge: "replace",
        example: "0",
        description: "Pod retries for failures before the job ran; exit 27 (job already taken or cancelled) is never retried.",
    },
    {
        key: "terminationGracePeriodSeconds", type: "integer", scope: "worker", default: 60, min: 10, max: 3600, merge: "replace",
        example: "300",
        description: "Time the agent gets to cancel its job and upload the last logs when the pod is stopped (10 to 3600; the agent's cancel grace is this minus 5 s).",
    },
    {
        key: "envFrom", type: "json", scope: "worker", merge: "list",
        example: "[{\"secretRef\":{\"name\":\"npm-token\"}},{\"configMapRef\":{\"name\":\"build-env\"}}]",
        description: "Environment from existing Secrets and ConfigMaps.",
    },
    {
        key: "affinity", type: "json", scope: "worker", merge: "replace",
        example: "{\"nodeAffinity\":{\"requiredDuringSchedulingIgnoredDuringExecution\":{\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":\"kubernetes.io/arch\",\"operator\":\"In\",\"values\":[\"amd64\"]}]}]}}}",
        description: "Pod affinity, anti-affinity and node affinity.",
    },
    {
        key: "serviceAccountName", type: "string", scope: "worker", merge: "replace",
        example: "deployer",
        description: "The pod's service account, e.g. one bound to an IAM role for the build's own AWS access (IRSA or EKS Pod Identity).",
    },
    {
        key: "fargate", type: "boolean", scope: "worker", default: false, merge: "replace",
        example: "true", exampleWith: { dind: "none", fargateSubnetIds: ["subnet-0abc1234"] },
        description: "Run the queue on EKS Fargate: the program creates a Fargate profile that selects the namespace and the queue's `scaledkite.io/fargate-queue` label. Needs `dind: none` (Fargate forbids privileged containers) and no `nodeSelector`/`tolerations`.",
    },
    {
        key: "podSpecPatch", type: "json", scope: "worker", merge: "replace",
        example: "{\"priorityClassName\":\"ci\",\"containers\":[{\"name\":\"agent\",\"workingDir\":\"/w\"}]}",
        description: "A strategic-merge patch of the pod spec, applied last, for anything without a key of its own (containers, volumes, env and mounts merge by name; `null` removes a field).",
    },
    {
        key: "maxConcurrentJobs", type: "integer", scope: "stack", min: 1, max: 100000, defaultText: "no cap",
        example: "20",
        description: "Spend cap: at most this many worker Jobs in the namespace (a `count/jobs.batch` ResourceQuota). A finished Job counts until its TTL removes it, so keep `ttlSecondsAfterFinished` short when you cap.",
    },
    {
        key: "maxCpu", type: "string", scope: "stack", defaultText: "no cap",
        example: "64",
        description: "Spend cap on the CPU requested by running worker pods (`requests.cpu` quota). Every worker container must then request CPU (checked at preview).",
    },
    {
        key: "maxMemory", type: "string", scope: "stack", defaultText: "no cap",
        example: "256Gi",
        description: "Spend cap on the memory requested by running worker pods (`requests.memory` quota).",
    },
    {
        key: "sweepInterval", type: "integer", scope: "stack", default: 1, min: 0, max: 60,
        example: "5",
        description: "Minutes between sweeps; `0` turns the sweep off.",
    },
    {
        key: "stackKey", type: "string", scope: "stack", defaultText: "`scaledkite-<stack>`",
        example: "ci-prod",
        description: "The key the sweep registers with Buildkite's Stacks API (one per queue).",
    },
    {
        key: "agentEndpoint", type: "string", scope: "stack", default: DEFAULT_AGENT_ENDPOINT,
        example: "https://agent.buildkite.com/v3",
        description: "The Stacks API endpoint.",
    },
    {
        key: "podPendingTimeout", type: "integer", scope: "stack", default: 600, min: 60, max: 604800,
        example: "1800",
        description: "Seconds a worker pod may stay unscheduled (no node fits, no capacity) before the sweep fails its job. A placed pod that is still starting is never timed out by the sweep (its `activeDeadlineSeconds` bounds it).",
    },
    {
        key: "startFailureGrace", type: "integer", scope: "stack", default: 300, min: 0, max: 3600,
        example: "600",
        description: "Seconds a worker's container may keep failing to start (image pull, container config), counted from the kubelet's first report of the failure, before the sweep fails its job.",
    },
    {
        key: "keepQueuesConnected", type: "boolean", scope: "stack", default: true,
        example: "false",
        description: "The sweep lists each served queue every 20 s between sweeps, so Buildkite shows it Connected (about $3.74 a month per stack; see \"Seeing what it does\").",
    },
    {
        key: "alarmTopicArn", type: "string", scope: "stack",
        example: "arn:aws:sns:us-east-1:123456789012:ci-alerts",
        description: "SNS topic notified by the alarms (DLQ not empty, Lambda errors). The alarms exist either way.",
    },
    {
        key: "roleArn", type: "string", scope: "stack", defaultText: "create one",
        example: "arn:aws:iam::123456789012:role/ci-scheduler",
        description: "Use an existing IAM role for the Lambda. It needs `logs:CreateLogStream`/`PutLogEvents` on the log group and `sqs:ReceiveMessage`, `DeleteMessage`, `GetQueueAttributes`, `ChangeMessageVisibility` on the event queue (output `eventQueueUrl`); its EKS access entry is still created.",
    },
    {
        key: "lambdaMemoryMb", type: "integer", scope: "stack", default: DEFAULT_LAMBDA_MEMORY_MB, min: 128, max: 10240,
        example: "1024",
        description: "The scheduler Lambda's memory, and with it its CPU share (AWS gives one vCPU at 1,769 MB). 512 was chosen by measurement: see Performance. The sweep and token sync run at 128 MB.",
    },
    {
        key: "lambdaTimeoutSeconds", type: "integer", scope: "stack", default: 30, min: MIN_LAMBDA_TIMEOUT_SECONDS, max: 900,
        example: "15",
        description: "The Lambda's timeout, at least 12 s (one whole Kubernetes call of at most 10 s, and time to log). Every call ends before the invocation's own deadline (its remaining time less 1.5 s), so a slow API server makes a logged, retried failure, never a silent timeout.",
    },
    {
        key: "schedulerConcurrency", type: "integer", scope: "stack", min: 2, max: 1000, defaultText: "unreserved",
        example: "100",
        description: "Reserved concurrency of the scheduler Lambda (2 to 1,000), and the event queue's maximum concurrency (default 100): a burst of jobs waits in the queue rather than taking the account's whole Lambda concurrency.",
    },
    {
        key: "sweepConcurrency", type: "integer", scope: "stack", default: 1, min: 1, max: 10,
        example: "1",
        description: "Reserved concurrency of the sweep Lambda: 1 keeps sweeps from overlapping.",
    },
    {
        key: "lambdaSubnetIds", type: "json", scope: "stack",
        example: "[\"subnet-0abc1234\"]", exampleWith: { lambdaSecurityGroupIds: ["sg-0123abcd"] },
        description: "Run every Lambda (scheduler, sweep, token sync) in these subnets with these security groups, so they reach a private EKS endpoint; both or neither. The subnets need a route to the EKS endpoint, and, for the sweep and token sync, to Buildkite's API and Secrets Manager (NAT or VPC endpoints). Each role gets the network-interface permissions a Lambda in a VPC needs.",
    },
    {
        key: "lambdaSecurityGroupIds", type: "json", scope: "stack",
        example: "[\"sg-0123abcd\"]", exampleWith: { lambdaSubnetIds: ["subnet-0abc1234"] },
        description: "The security groups of every Lambda in a VPC, with `lambdaSubnetIds` (both or neither).",
    },
    {
        key: "logRetentionDays", type: "integer", scope: "stack", default: 14, min: 1, max: 3653,
        example: "30",
        description: "Retention of the Lambda's log group (`/scaledkite/<stack>/scheduler`).",
    },
    {
        key: "retryAttempts", type: "integer", scope: "stack", default: 185, min: 0, max: 185,
        example: "50",
        description: "EventBridge's retries to deliver an event into the event queue (a failed scheduling is retried by the queue, for at least 24 h).",
    },
    {
        key: "maxEventAgeSeconds", type: "integer", scope: "stack", default: 86400, min: 60, max: 86400,
        example: "3600",
        description: "How long EventBridge keeps trying to deliver an event into the event queue.",
    },
];

const BY_KEY = new Map(SETTINGS.map((s) => [s.key, s]));

/** The declaration of a key; throws for a key that is not declared (a programming error). */
export function setting(key: string): Setting {
    const s = BY_KEY.get(key);
    if (!s) throw new Error(`scaledkite: no setting ${key} is declared`);
    return s;
}

/** Every key a stack may set (the stack-wide `env` is a secret map, the per-queue one plain). */
export const CONFIG_KEYS: readonly string[] = SETTINGS.map((s) => s.key);
/** Keys that hold secrets: only their presence is read by the parser. */
export const SECRET_KEYS: readonly string[] = SETTINGS.filter((s) => s.secret).map((s) => s.key);
/** Keys a queue's entry may set. */
export const WORKER_KEYS: readonly string[] = [
    ...SETTINGS.filter((s) => s.scope === "worker" && !s.secret), ...SETTINGS.filter((s) => s.scope === "worker" && s.secret),
].map((s) => s.key);

/** How the default reads in the README. */
function defaultCell(s: Setting): string {
    const text = s.required ? "required" : s.defaultText ?? (s.default === undefined ? "none" : `\`${s.default}\``);
    return s.secret ? `${text}, secret` : text;
}

/** The README's configuration table, one row per setting. Pure. */
export function renderReadmeTable(): string {
    const cell = (t: string) => t.replace(/\|/g, "\\|");
    const rows = SETTINGS.map((s) => {
        const example = `\`${s.exampleText ?? (s.secret ? `--secret '${s.example}'` : s.example)}\``;
        return `| \`${s.key}\` | ${cell(defaultCell(s))} | ${cell(example)} | ${cell(s.description)} |`;
    });
    return ["| key | default | example | what it does |", "|---|---|---|---|", ...rows].join("\n");
}

/**
 * Pulumi.yaml's `config:` block: Pulumi's own declarations (type, description, default, secret), so
 * `pulumi config` and `pulumi preview` know the types. Pulumi takes a declared key without a default
 * as required, and types only strings, integers, booleans and arrays: so a key is declared there when
 * it is required or has one plain default; the others (maps and lists, optional keys without a
 * default) are the parser's alone. Pure.
 */
export function renderPulumiConfig(): Record<string, Record<string, unknown>> {
    const out: Record<string, Record<string, unknown>> = {};
    for (const s of SETTINGS) {
        if (s.type === "json" || (!s.required && s.default === undefined)) continue;
        const description = s.description.replace(/\s*\(see [^)]*\)/g, "");
        out[`scaledkite:${s.key}`] = { type: s.type, description, ...(s.default === undefined ? {} : { default: s.default }), ...(s.secret ? { secret: true } : {}) };
    }
    return out;
}
