/**
 * A git repository over HTTP, as a git host serves one: git's own `git http-backend` (smart HTTP),
 * optionally behind basic auth that refuses requests without the right credentials (401 with a Basic
 * challenge, so git asks its credential helper). The tests serve a private repository; the pipeline
 * command serves the user's own repository to the checkout of each job.
 */
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";

export interface GitHttpServer {
    /** The repository's URL, without credentials. */
    url: string;
    /** Requests that came without valid credentials. */
    refused: number;
    close(): Promise<void>;
}

function git(args: string[], cwd: string): void {
    const r = spawnSync("git", args, {
        cwd,
        encoding: "utf8",
        env: {
            ...process.env,
            GIT_AUTHOR_NAME: "t",
            GIT_AUTHOR_EMAIL: "t@example.com",
            GIT_COMMITTER_NAME: "t",
            GIT_COMMITTER_EMAIL: "t@example.com",
        },
    });
    if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
}

/** Makes `root/app.git`, a bare repository whose main branch holds `files` in one commit "initial". Returns its path. */
export function bareRepository(root: string, files: Record<string, string>): string {
    const work = path.join(root, "work");
    fs.mkdirSync(work);
    git(["init", "-q", "-b", "main"], work);
    for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(work, name), content);
    git(["add", "."], work);
    git(["commit", "-q", "-m", "initial"], work);
    const repo = path.join(root, "app.git");
    git(["clone", "-q", "--bare", work, repo], root);
    return repo;
}

/** Serves a bare repository `app.git` whose main branch holds `files`, on `host`, to `user` only. */
export async function startGitHttpServer(
    host: string,
    user: string,
    password: string,
    files: Record<string, string>,
): Promise<GitHttpServer> {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "git-http-"));
    bareRepository(root, files);
    return serveRepository(host, root, { user, password });
}

/** Serves a bare copy of the git repository at `dir` (its current branch) on `host`, to anyone. */
export async function serveLocalRepository(host: string, dir: string): Promise<GitHttpServer> {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "git-http-"));
    git(["clone", "-q", "--bare", dir, path.join(root, "app.git")], root);
    return serveRepository(host, root);
}

/** Serves `root/app.git` on `host`; the directory is removed on close. */
async function serveRepository(
    host: string,
    root: string,
    auth?: { user: string; password: string },
): Promise<GitHttpServer> {
    const expected = auth && `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString("base64")}`;
    const user = auth?.user ?? "anonymous";
    const state = { refused: 0 };

    const server = http.createServer((req, res) => {
        if (expected && req.headers.authorization !== expected) {
            state.refused++;
            res.writeHead(401, { "www-authenticate": 'Basic realm="git"' });
            res.end("authentication required\n");
            return;
        }
        const url = new URL(req.url ?? "/", "http://git");
        const cgi = spawn("git", ["http-backend"], {
            env: {
                ...process.env,
                GIT_PROJECT_ROOT: root,
                GIT_HTTP_EXPORT_ALL: "1",
                REMOTE_USER: user,
                REQUEST_METHOD: req.method ?? "GET",
                PATH_INFO: url.pathname,
                QUERY_STRING: url.search.slice(1),
                CONTENT_TYPE: req.headers["content-type"] ?? "",
                HTTP_CONTENT_ENCODING: String(req.headers["content-encoding"] ?? ""),
                GIT_PROTOCOL: String(req.headers["git-protocol"] ?? ""),
            },
        });
        req.pipe(cgi.stdin);
        let head = Buffer.alloc(0);
        let headersDone = false;
        cgi.stdout.on("data", (chunk: Buffer) => {
            if (headersDone) return void res.write(chunk);
            head = Buffer.concat([head, chunk]);
            const end = head.indexOf("\r\n\r\n");
            if (end < 0) return;
            headersDone = true;
            let status = 200;
            const headers: Record<string, string> = {};
            for (const line of head.subarray(0, end).toString().split("\r\n")) {
                const i = line.indexOf(":");
                const [k, v] = [line.slice(0, i).trim(), line.slice(i + 1).trim()];
                if (k.toLowerCase() === "status") status = parseInt(v, 10);
                else headers[k] = v;
            }
            res.writeHead(status, headers);
            res.write(head.subarray(end + 4));
        });
        cgi.on("close", () => res.end());
    });
    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, host, resolve);
    });
    const { port } = server.address() as { port: number };
    return {
        url: `http://${host}:${port}/app.git`,
        get refused() {
            return state.refused;
        },
        close: async () => {
            server.closeAllConnections();
            await new Promise<void>((r) => server.close(() => r()));
            fs.rmSync(root, { recursive: true, force: true });
        },
    };
}
