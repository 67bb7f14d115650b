/**
 * A stand-in for Buildkite's agent API (the `/v3` API the buildkite-agent binary talks to), so the
 * real agent in a worker pod on the local node can run a job end to end. What it implements, and
 * the shapes it answers with, follow the agent's own client at the pinned version
 * (github.com/buildkite/agent/v3@v3.138.3, api/*.go and core/client.go):
 *
 *   POST /register              registration token (`Authorization: Token …`) → agent id + access token
 *   POST /connect, /disconnect, /stop, /heartbeat, GET /ping          the agent's own access token
 *   PUT  /jobs/:id/acquire      200 with the job; 404 unknown; 423 while locked (the agent retries);
 *                               422 once taken, cancelled or finished, or when the agent's tags do
 *                               not match the job's queue (the agent exits 27)
 *   PUT  /jobs/:id/start, /finish; POST /jobs/:id/chunks (gzip), /header_times; GET /jobs/:id (state,
 *                               "canceling" after cancel(): the agent polls it and cancels the job)
 *   POST /jobs/:id/data/{set,set-batch,get,exists,keys}, /builds/:id/data/…   meta-data
 *   POST /jobs/:id/artifacts    a batch → artifact ids and a form-upload template (Buildkite-hosted
 *                               storage: the agent's BKUploader, internal/artifact/bk_uploader.go);
 *                               POST /artifact-uploads takes the form (the batch's signature field,
 *                               the key with ${artifact:path} filled in, the file last); PUT
 *                               /jobs/:id/artifacts records each artifact's final state
 *
 * Job-scoped calls accept the acquiring agent's access token or the job's own token (the one the
 * job's commands get as BUILDKITE_AGENT_ACCESS_TOKEN); anything else gets 401, as Buildkite answers.
 * It records what each job did: acquisitions, state, log text, exit status, signal and timings.
 */
import * as crypto from "crypto";
import * as http from "http";
import * as zlib from "zlib";

export interface StandInJob {
    id: string;
    buildId: string;
    queue: string;
    command: string;
    env: Record<string, string>;
    /** scheduled → (locked) → accepted → running → finished; canceling → canceled */
    state: string;
    token: string;
    acquiredBy?: string;
    acquireAttempts: number;
    rejectedAcquisitions: number;
    chunks: Map<number, string>;
    exitStatus?: string;
    signal?: string;
    signalReason?: string;
    times: { created: number; acquired?: number; started?: number; finished?: number };
    headerTimes: Record<string, string>;
    /** Artifacts by id: what the agent declared, what was uploaded, and the state it reported. */
    artifacts: Map<string, StandInArtifact>;
}

export interface StandInArtifact {
    path: string;
    sha256: string;
    size: number;
    /** The uploaded bytes (undefined until the form upload arrives). */
    content?: Buffer;
    /** "new" until the agent reports "finished" or "error". */
    state: string;
}

export interface StandInAgent {
    id: string;
    name: string;
    token: string;
    tags: string[];
    connected: boolean;
    disconnected: boolean;
    gracefulStop: boolean;
    registeredAt: number;
}

export interface JobSpec {
    command: string;
    queue?: string;
    env?: Record<string, string>;
    /** Answer 423 (waiting for a dependency) to this many acquisitions; Infinity: always. */
    lockedFor?: number;
    /** The repository to check out; without one the job skips its checkout. */
    repo?: string;
}

export class AgentApiStandIn {
    readonly jobs = new Map<string, StandInJob>();
    readonly agents: StandInAgent[] = [];
    readonly metaData = new Map<string, Record<string, string>>();
    /** Every request, in order: what a test prints when an agent does not do what it waits for. `agent`: the calling agent's id. */
    readonly requests: { method: string; path: string; status: number; at: number; agent?: string }[] = [];
    private readonly lockedFor = new Map<string, number>();
    /** Pending form uploads: the signature a batch's template carries → its job and artifacts by path. */
    private readonly uploadSignatures = new Map<string, { job: StandInJob; byPath: Map<string, StandInArtifact> }>();
    private server?: http.Server;
    endpoint = "";

    constructor(readonly registrationToken = `bkrt_${crypto.randomBytes(12).toString("hex")}`) {}

    async start(host = "127.0.0.1"): Promise<this> {
        this.server = http.createServer((req, res) => this.handle(req, res));
        await new Promise<void>((resolve, reject) => {
            this.server!.once("error", reject);
            this.server!.listen(0, host, resolve);
        });
        const { port } = this.server.address() as { port: number };
        this.endpoint = `http://${host}:${port}/v3`;
        return this;
    }

    async stop(): Promise<void> {
        if (!this.server) return;
        this.server.closeAllConnections();
        await new Promise<void>((r) => this.server!.close(() => r()));
    }

    /** Adds a job that a worker can acquire. */
    addJob(id: string, spec: JobSpec): StandInJob {
        const buildId = crypto.randomUUID();
        const job: StandInJob = {
            id,
            buildId,
            queue: spec.queue ?? "default",
            command: spec.command,
            env: {
                BUILDKITE_JOB_ID: id,
                BUILDKITE_BUILD_ID: buildId,
                BUILDKITE_BUILD_NUMBER: "1",
                BUILDKITE_BUILD_URL: `https://buildkite.com/acme/app/builds/1`,
                BUILDKITE_PIPELINE_SLUG: "app",
                BUILDKITE_ORGANIZATION_SLUG: "acme",
                BUILDKITE_PIPELINE_PROVIDER: "git",
                BUILDKITE_PIPELINE_DEFAULT_BRANCH: "main",
                BUILDKITE_BRANCH: "main",
                BUILDKITE_COMMIT: "HEAD",
                BUILDKITE_LABEL: "step",
                // Buildkite always sends the pipeline's repository; these jobs skip the checkout.
                BUILDKITE_REPO: "https://git.example.invalid/acme/app.git",
                BUILDKITE_SKIP_CHECKOUT: "true",
                BUILDKITE_COMMAND: spec.command,
                BUILDKITE_SCRIPT_PATH: spec.command,
                BUILDKITE_BUILD_CREATOR: "Local",
                BUILDKITE_MESSAGE: "local build",
                BUILDKITE_SOURCE: "api",
                BUILDKITE_RETRY_COUNT: "0",
                BUILDKITE_TIMEOUT: "false",
                ...(spec.repo ? { BUILDKITE_REPO: spec.repo, BUILDKITE_SKIP_CHECKOUT: "false" } : {}),
                ...spec.env,
            },
            state: "scheduled",
            token: `bkaj_${crypto.randomBytes(12).toString("hex")}`,
            acquireAttempts: 0,
            rejectedAcquisitions: 0,
            chunks: new Map(),
            times: { created: Date.now() },
            headerTimes: {},
            artifacts: new Map(),
        };
        this.jobs.set(id, job);
        if (spec.lockedFor) this.lockedFor.set(id, spec.lockedFor);
        return job;
    }

    /** Cancels a job as the Buildkite UI does: running jobs move to "canceling" until they finish. */
    cancel(id: string): void {
        const job = this.jobs.get(id);
        if (!job) throw new Error(`no job ${id}`);
        job.state = job.state === "running" || job.state === "accepted" ? "canceling" : "canceled";
    }

    /** The job's log as the agent uploaded it, chunks in order. */
    /** One agent's requests since `since` (ms), a line each with its time relative to `since`: for a wait's failure message. */
    requestsOf(agentId: string | undefined, since: number): string {
        return (
            this.requests
                .filter((r) => r.agent === agentId && r.at >= since)
                .map((r) => `+${r.at - since}ms ${r.method} ${r.path} ${r.status}`)
                .join("; ") || "none"
        );
    }

    log(id: string): string {
        const job = this.jobs.get(id);
        if (!job) return "";
        return [...job.chunks.entries()]
            .sort((a, b) => a[0] - b[0])
            .map(([, t]) => t)
            .join("");
    }

    /** The job's log as a person reads it: without the agent's timestamp markers, colours and CRs. */
    text(id: string): string {
        return (
            this.log(id)
                // eslint-disable-next-line no-control-regex -- the agent's escape sequences are what is removed
                .replace(/\x1b_bk;t=\d+\x07/g, "")
                // eslint-disable-next-line no-control-regex -- likewise
                .replace(/\x1b\[[0-9;]*[a-zA-Z]/g, "")
                .replace(/\r/g, "")
        );
    }

    private agentByToken(token: string | undefined): StandInAgent | undefined {
        return this.agents.find((a) => a.token === token);
    }

    private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
            const url = new URL(req.url ?? "/", "http://stand-in");
            const reply = (status: number, body: unknown = {}) => {
                const agent = this.agentByToken(/^Token (.+)$/.exec(req.headers.authorization ?? "")?.[1])?.id;
                this.requests.push({
                    method: req.method ?? "",
                    path: url.pathname,
                    status,
                    at: Date.now(),
                    ...(agent ? { agent } : {}),
                });
                res.writeHead(status, { "content-type": "application/json" });
                res.end(JSON.stringify(body));
            };
            try {
                const raw = Buffer.concat(chunks);
                const auth = /^Token (.+)$/.exec(req.headers.authorization ?? "")?.[1];
                if (req.method === "POST" && url.pathname === "/artifact-uploads")
                    return this.artifactUpload(raw, req.headers["content-type"] ?? "", reply);
                const route = url.pathname.replace(/^\/v3\//, "");
                const json = () =>
                    raw.length && req.headers["content-encoding"] !== "gzip" ? JSON.parse(raw.toString()) : {};
                this.route(req.method ?? "GET", route, auth, json, raw, url, reply);
            } catch (e) {
                reply(500, { message: (e as Error).message });
            }
        });
    }

    private route(
        method: string,
        route: string,
        auth: string | undefined,
        json: () => Record<string, unknown>,
        raw: Buffer,
        url: URL,
        reply: (status: number, body?: unknown) => void,
    ): void {
        if (method === "POST" && route === "register") {
            if (auth !== this.registrationToken) return reply(401, { message: "Invalid agent registration token" });
            const body = json();
            const agent: StandInAgent = {
                id: crypto.randomUUID(),
                name: String(body.name ?? "agent"),
                token: `bkaa_${crypto.randomBytes(12).toString("hex")}`,
                tags: (body.meta_data as string[] | undefined) ?? [],
                connected: false,
                disconnected: false,
                gracefulStop: false,
                registeredAt: Date.now(),
            };
            this.agents.push(agent);
            return reply(200, {
                id: agent.id,
                name: agent.name,
                access_token: agent.token,
                endpoint: this.endpoint,
                ping_interval: 2,
                job_status_interval: 1,
                heartbeat_interval: 10,
                meta_data: agent.tags,
            });
        }
        const agent = this.agentByToken(auth);
        const jobMatch = /^(jobs|builds)\/([^/]+)(?:\/(.+))?$/.exec(route);
        if (jobMatch) {
            const [, scope, id, rest = ""] = jobMatch;
            if (scope === "builds") {
                const build = [...this.jobs.values()].find((j) => j.buildId === id);
                if (!build || (!agent && build.token !== auth)) return reply(401, { message: "Unauthorized" });
                return this.metaDataRoute(build.buildId, rest, json, reply);
            }
            const job = this.jobs.get(id);
            if (!job) return reply(404, { message: "No job found" });
            const jobToken = auth === job.token;
            if (!agent && !jobToken) return reply(401, { message: "Unauthorized" });
            if (agent && rest !== "acquire" && job.acquiredBy !== undefined && job.acquiredBy !== agent.id) {
                return reply(403, { message: "This job is assigned to another agent" });
            }
            return this.jobRoute(method, job, rest, agent, json, raw, url, reply);
        }
        if (!agent) return reply(401, { message: "Unauthorized" });
        switch (`${method} ${route}`) {
            case "POST connect":
                agent.connected = true;
                return reply(200, { id: agent.id, connection_state: "connected" });
            case "POST disconnect":
                agent.disconnected = true;
                return reply(200, { id: agent.id, connection_state: "disconnected" });
            case "POST stop":
                agent.gracefulStop = true;
                return reply(200, {});
            case "POST heartbeat":
                return reply(200, { ...json(), received_at: new Date().toISOString() });
            case "GET ping":
                return reply(200, {});
            default:
                return reply(404, { message: `stand-in has no route for ${method} ${route}` });
        }
    }

    private jobRoute(
        method: string,
        job: StandInJob,
        rest: string,
        agent: StandInAgent | undefined,
        json: () => Record<string, unknown>,
        raw: Buffer,
        url: URL,
        reply: (status: number, body?: unknown) => void,
    ): void {
        switch (`${method} ${rest}`) {
            case "PUT acquire": {
                if (!agent) return reply(401, { message: "Unauthorized" });
                job.acquireAttempts++;
                const locked = this.lockedFor.get(job.id) ?? 0;
                if (locked > 0 && job.state === "scheduled") {
                    this.lockedFor.set(job.id, locked - 1);
                    return reply(423, { message: "Job is waiting on a dependency" });
                }
                if (job.state !== "scheduled") {
                    job.rejectedAcquisitions++;
                    return reply(422, { message: `Job is already ${job.state}` });
                }
                if (!agent.tags.includes(`queue=${job.queue}`)) {
                    job.rejectedAcquisitions++;
                    return reply(422, {
                        message: `Agent does not match the job's agent query rules (queue=${job.queue})`,
                    });
                }
                job.state = "accepted";
                job.acquiredBy = agent.id;
                job.times.acquired = Date.now();
                return reply(200, {
                    // Buildkite adds the acquiring agent to the job's environment (the bootstrap needs its name).
                    id: job.id,
                    endpoint: this.endpoint,
                    state: job.state,
                    token: job.token,
                    env: { ...job.env, BUILDKITE_AGENT_ID: agent.id, BUILDKITE_AGENT_NAME: agent.name },
                    chunks_max_size_bytes: 102400,
                    chunks_interval_seconds: 1,
                    log_max_size_bytes: 100 * 1024 * 1024,
                    runnable_at: new Date(job.times.created).toISOString(),
                });
            }
            case "PUT start":
                if (job.state === "accepted") job.state = "running";
                job.times.started = Date.now();
                return reply(200, {});
            case "POST chunks": {
                const sequence = Number(url.searchParams.get("sequence"));
                job.chunks.set(sequence, zlib.gunzipSync(raw).toString());
                return reply(201, {});
            }
            case "POST header_times":
                Object.assign(job.headerTimes, json());
                return reply(200, {});
            case "GET ":
                return reply(200, { state: job.state });
            case "PUT finish": {
                const body = json();
                job.exitStatus = body.exit_status === undefined ? undefined : String(body.exit_status);
                job.signal = body.signal as string | undefined;
                job.signalReason = body.signal_reason as string | undefined;
                job.state = job.state === "canceling" ? "canceled" : "finished";
                job.times.finished = Date.now();
                return reply(200, {});
            }
            case "POST artifacts": {
                // The agent sends the batch, then uploads each file with the template (batch_creator.go).
                const batch = json() as { artifacts?: { path?: string; sha256sum?: string; file_size?: number }[] };
                const signature = crypto.randomBytes(16).toString("hex");
                const byPath = new Map<string, StandInArtifact>();
                const ids = (batch.artifacts ?? []).map((a) => {
                    const id = crypto.randomUUID();
                    const artifact: StandInArtifact = {
                        path: String(a.path),
                        sha256: String(a.sha256sum ?? ""),
                        size: Number(a.file_size ?? 0),
                        state: "new",
                    };
                    job.artifacts.set(id, artifact);
                    byPath.set(artifact.path, artifact);
                    return id;
                });
                this.uploadSignatures.set(signature, { job, byPath });
                return reply(201, {
                    id: crypto.randomUUID(),
                    artifact_ids: ids,
                    upload_instructions: {
                        action: { url: this.endpoint, method: "POST", path: "/artifact-uploads", file_input: "file" },
                        data: { key: "${artifact:path}", signature },
                    },
                });
            }
            case "PUT artifacts": {
                const states = (json() as { artifacts?: { id?: string; state?: string }[] }).artifacts ?? [];
                for (const { id, state } of states) {
                    const artifact = job.artifacts.get(String(id));
                    if (!artifact) return reply(404, { message: `No artifact ${id}` });
                    artifact.state = String(state);
                }
                return reply(200, {});
            }
            default:
                if (rest.startsWith("data/")) return this.metaDataRoute(job.buildId, rest, json, reply);
                return reply(404, { message: `stand-in has no route for ${method} jobs/:id/${rest}` });
        }
    }

    /** The form upload: refused without a batch's signature or for a path the batch did not declare. */
    private artifactUpload(raw: Buffer, contentType: string, reply: (status: number, body?: unknown) => void): void {
        void (async () => {
            const form = await new Response(new Uint8Array(raw), {
                headers: { "content-type": contentType },
            }).formData();
            const pending = this.uploadSignatures.get(String(form.get("signature")));
            if (!pending) return reply(403, { message: "Invalid upload signature" });
            const artifact = pending.byPath.get(String(form.get("key")));
            const file = form.get("file");
            if (!artifact || !(file instanceof Blob))
                return reply(400, { message: `No such artifact in the batch, or no file (key ${form.get("key")})` });
            artifact.content = Buffer.from(await file.arrayBuffer());
            return reply(201, {});
        })().catch((e) => reply(400, { message: `bad form upload: ${(e as Error).message}` }));
    }

    private metaDataRoute(
        buildId: string,
        rest: string,
        json: () => Record<string, unknown>,
        reply: (status: number, body?: unknown) => void,
    ): void {
        const store = this.metaData.get(buildId) ?? {};
        this.metaData.set(buildId, store);
        const body = json();
        switch (rest) {
            case "data/set":
                store[String(body.key)] = String(body.value);
                return reply(201, {});
            case "data/set-batch":
                for (const item of (body.items as { key: string; value: string }[] | undefined) ?? [])
                    store[item.key] = item.value;
                return reply(201, {});
            case "data/get":
                return String(body.key) in store
                    ? reply(200, { key: body.key, value: store[String(body.key)] })
                    : reply(404, { message: "No key found" });
            case "data/exists":
                return reply(200, { exists: String(body.key) in store });
            case "data/keys":
                return reply(200, Object.keys(store));
            default:
                return reply(404, { message: `stand-in has no route for ${rest}` });
        }
    }
}
