/**
 * A read-only registry on loopback that serves the node's own images (the docker-archive tars the
 * image recipes build) under their stock names, as containerd's mirror for docker.io. A pod whose image
 * is `alpine:latest` gets the kubelet's default pull policy for `:latest`, Always: the kubelet asks
 * containerd to pull it every time (kubernetes v1.34.4 pkg/kubelet/images/image_manager.go), and with
 * no registry reachable that pull would fail. With this mirror the pull is real: containerd resolves
 * the tag here (the distribution API's manifests and blobs: GET and HEAD /v2/<name>/manifests/<tag>,
 * GET /v2/<name>/blobs/<digest>), finds the layer it already holds, and starts the container.
 * Nothing leaves the machine.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as path from "path";

interface Entry {
    offset: number;
    size: number;
}

/** The files of a tar archive (ustar; the recipes write plain regular files), by name. */
function tarEntries(file: string): Map<string, Entry> {
    const fd = fs.openSync(file, "r");
    const out = new Map<string, Entry>();
    try {
        const header = Buffer.alloc(512);
        for (let at = 0; fs.readSync(fd, header, 0, 512, at) === 512;) {
            if (header.every((b) => b === 0)) break;
            const name = header.toString("utf8", 0, 100).replace(/\0.*$/s, "").replace(/^\.\//, "");
            const size = parseInt(header.toString("utf8", 124, 136).replace(/\0.*$/s, "").trim() || "0", 8);
            out.set(name, { offset: at + 512, size });
            at += 512 + Math.ceil(size / 512) * 512;
        }
    } finally {
        fs.closeSync(fd);
    }
    return out;
}

function readEntry(file: string, e: Entry): Buffer {
    const fd = fs.openSync(file, "r");
    try {
        const b = Buffer.alloc(e.size);
        fs.readSync(fd, b, 0, e.size, e.offset);
        return b;
    } finally {
        fs.closeSync(fd);
    }
}

function sha256OfRange(file: string, e: Entry): Promise<string> {
    return new Promise((resolve, reject) => {
        const h = crypto.createHash("sha256");
        fs.createReadStream(file, { start: e.offset, end: e.offset + e.size - 1 })
            .on("data", (c) => h.update(c))
            .on("end", () => resolve(`sha256:${h.digest("hex")}`))
            .on("error", reject);
    });
}

interface Blob {
    file?: string;
    entry?: Entry;
    bytes?: Buffer;
    mediaType: string;
}

export interface RegistryMirror {
    /** The mirror's address (http://127.0.0.1:PORT). */
    url: string;
    /** The repository names it serves (`library/alpine`, …). */
    names: string[];
    close(): Promise<void>;
}

const MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json";

/**
 * Serves every image of the tars in `dirs` whose tag is a docker.io name (`docker.io/<name>:<tag>`),
 * and under `aliases` (an image's own tag -> more docker.io names for it).
 */
export async function startRegistryMirror(
    dirs: string[],
    port = 0,
    aliases: Record<string, string[]> = {},
): Promise<RegistryMirror> {
    const blobs = new Map<string, Blob>();
    const manifests = new Map<string, { digest: string; body: Buffer }>();
    for (const file of dirs.flatMap((d) =>
        fs
            .readdirSync(d)
            .filter((f) => f.endsWith(".tar"))
            .map((f) => path.join(d, f)),
    )) {
        const entries = tarEntries(file);
        const manifestEntry = entries.get("manifest.json");
        if (!manifestEntry) continue;
        const [image] = JSON.parse(readEntry(file, manifestEntry).toString()) as {
            Config: string;
            RepoTags?: string[];
            Layers: string[];
        }[];
        const served = (image.RepoTags ?? [])
            .flatMap((t) => [t, ...(aliases[t] ?? [])])
            .map((t) => /^docker\.io\/(.+):([^:/]+)$/.exec(t))
            .filter((m): m is RegExpExecArray => m !== null);
        if (served.length === 0) continue;
        const config = readEntry(file, entries.get(image.Config)!);
        const configDigest = `sha256:${crypto.createHash("sha256").update(config).digest("hex")}`;
        blobs.set(configDigest, { bytes: config, mediaType: "application/vnd.oci.image.config.v1+json" });
        const layers = [];
        for (const layer of image.Layers) {
            const entry = entries.get(layer)!;
            const digest = await sha256OfRange(file, entry);
            blobs.set(digest, { file, entry, mediaType: "application/vnd.oci.image.layer.v1.tar" });
            layers.push({ mediaType: "application/vnd.oci.image.layer.v1.tar", digest, size: entry.size });
        }
        const body = Buffer.from(
            JSON.stringify({
                schemaVersion: 2,
                mediaType: MANIFEST_TYPE,
                config: {
                    mediaType: "application/vnd.oci.image.config.v1+json",
                    digest: configDigest,
                    size: config.length,
                },
                layers,
            }),
        );
        const digest = `sha256:${crypto.createHash("sha256").update(body).digest("hex")}`;
        for (const m of served) manifests.set(`${m[1]}:${m[2]}`, { digest, body });
        blobs.set(digest, { bytes: body, mediaType: MANIFEST_TYPE });
    }

    const server = http.createServer((req, res) => {
        const url = new URL(req.url ?? "/", "http://mirror");
        const head = req.method === "HEAD";
        if (url.pathname === "/v2/" || url.pathname === "/v2") {
            res.writeHead(200, { "docker-distribution-api-version": "registry/2.0" });
            return void res.end();
        }
        const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
        const notFound = () => {
            res.writeHead(404, { "content-type": "application/json" });
            res.end(JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN", message: "not on this machine" }] }));
        };
        if (!m || (req.method !== "GET" && !head)) return notFound();
        const [, name, kind, ref] = m;
        const digest =
            kind === "manifests" && !ref.startsWith("sha256:") ? manifests.get(`${name}:${ref}`)?.digest : ref;
        const blob = digest ? blobs.get(digest) : undefined;
        if (!digest || !blob) return notFound();
        const size = blob.bytes?.length ?? blob.entry!.size;
        res.writeHead(200, {
            "content-type": blob.mediaType,
            "content-length": String(size),
            "docker-content-digest": digest,
        });
        if (head) return void res.end();
        if (blob.bytes) return void res.end(blob.bytes);
        fs.createReadStream(blob.file!, { start: blob.entry!.offset, end: blob.entry!.offset + size - 1 }).pipe(res);
    });
    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", resolve);
    });
    const address = server.address() as { port: number };
    return {
        url: `http://127.0.0.1:${address.port}`,
        names: [...manifests.keys()],
        close: () => new Promise<void>((r) => server.close(() => r())),
    };
}

/** containerd's hosts.toml for docker.io: resolve and pull through the mirror, nowhere else. */
export function mirrorHostsToml(mirrorUrl: string): string {
    return [`server = "${mirrorUrl}"`, "", `[host."${mirrorUrl}"]`, '  capabilities = ["pull", "resolve"]', ""].join(
        "\n",
    );
}
