#!/usr/bin/env bash
# Builds the local node's container images without any image registry, once per recipe, and prints
# the directory that holds them as docker-archive tars (what `ctr images import` takes):
#   scaledkite.local/buildkite-agent:3.138.3  Debian 12 with buildkite-agent built from Go modules at
#                                             exactly the default image's version, git, openssh-client,
#                                             bash, curl, jq, tini and the docker CLI; started the way
#                                             the stock buildkite/agent image starts the agent
#   scaledkite.local/dind:20.10.24            Debian 12's dockerd, with an entrypoint that treats its
#                                             arguments as the stock docker:dind one does
#   scaledkite.local/dind-rootless:20.10.24   the same dockerd, run by the same entrypoint as uid 1000
#                                             inside rootlesskit, laid out as the stock
#                                             docker:dind-rootless image is (user `rootless`, its
#                                             /etc/subuid range, /run/user, the data directory)
#   scaledkite.local/pause:1                  the pod sandbox
# Root filesystems come from Debian's packages (mmdebstrap, with this machine's apt sources); the
# cache key is a hash of this recipe, so editing it or the files under images/ builds anew.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
AGENT_VERSION=3.138.3
# v3.138.3's go.mod asks for this Go; the go command fetches it from the Go module proxy.
AGENT_GO=go1.26.10
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/scaledkite/images"
key=$(cat "$0" "$here"/images/*.sh "$here"/images/*/*.go "$here"/images/*/go.mod | sha256sum | cut -c1-16)
out="$cache_root/$key"
images=(buildkite-agent dind dind-rootless pause)
have_all() { for i in "${images[@]}"; do [ -s "$out/$i.tar" ] || return 1; done; }
if have_all; then echo "$out"; exit 0; fi

for tool in go mmdebstrap python3; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed: run 'apt-get install mmdebstrap' (and Go) to build the local images" >&2; exit 2; }
done
mirrors=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -s "$f" ] && mirrors+=("$f")
done
[ ${#mirrors[@]} -gt 0 ] || { echo "no apt sources on this machine: mmdebstrap needs Debian's packages" >&2; exit 2; }

start=$(date +%s)
work="$out.partial"
rm -rf "$work" && mkdir -p "$work/files"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

# --- buildkite-agent from Go modules. The proxy refuses one of its dependencies (drjosh.dev/zzglob,
# 403), so that module is replaced by Scaledkite's own implementation of the API the agent calls.
agent_build="$cache_root/agent-build-v$AGENT_VERSION"
mkdir -p "$agent_build"
cat > "$agent_build/go.mod" <<GOMOD
module scaledkite.local/agent

go 1.26.10

require github.com/buildkite/agent/v3 v$AGENT_VERSION

replace drjosh.dev/zzglob => $here/images/zzglob
GOMOD
printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/buildkite/agent/v3"\n' > "$agent_build/tools.go"
(cd "$agent_build" && export GOTOOLCHAIN=$AGENT_GO && { go mod tidy >/dev/null 2>&1 || true; } &&
  go build -trimpath -ldflags "-s -w -X github.com/buildkite/agent/v3/version.buildNumber=scaledkite" \
    -o "$work/files/buildkite-agent" github.com/buildkite/agent/v3)
echo "built buildkite-agent $("$work/files/buildkite-agent" --version) in $(( $(date +%s) - start ))s" >&2

# --- the pause binary
(cd "$here/images/pause" && GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" -o "$work/files/pause" .)

# --- root filesystems
debian() { # debian OUT.tar PACKAGES [HOOK...]
  local tar="$1" pkgs="$2"; shift 2
  local hooks=(); for h in "$@"; do hooks+=(--customize-hook="$h"); done
  mmdebstrap --quiet --variant=minbase --mode=root --include="$pkgs" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    "${hooks[@]}" bookworm "$tar" "${mirrors[@]}"
}
f="$work/files"
debian "$work/buildkite-agent.rootfs.tar" bash,ca-certificates,curl,git,jq,openssh-client,tini,docker.io,procps \
  'rm -f "$1"/usr/sbin/dockerd "$1"/usr/bin/containerd* "$1"/usr/sbin/runc "$1"/usr/bin/ctr' \
  "mkdir -p \"\$1\"/buildkite/builds \"\$1\"/buildkite/hooks \"\$1\"/buildkite/plugins" \
  "install -m 0755 $f/buildkite-agent \"\$1\"/usr/local/bin/buildkite-agent" \
  "install -m 0755 $here/images/agent-entrypoint.sh \"\$1\"/usr/local/bin/buildkite-agent-entrypoint" \
  "printf 'build-path=\"/buildkite/builds\"\nhooks-path=\"/buildkite/hooks\"\nplugins-path=\"/buildkite/plugins\"\n' > \"\$1\"/buildkite/buildkite-agent.cfg"
echo "agent root filesystem after $(( $(date +%s) - start ))s" >&2
debian "$work/dind.rootfs.tar" ca-certificates,docker.io,iptables,tini,procps \
  "install -m 0755 $here/images/dind-entrypoint.sh \"\$1\"/usr/local/bin/dockerd-entrypoint.sh"
echo "dind root filesystem after $(( $(date +%s) - start ))s" >&2
# As docker-library/docker's 28/dind-rootless/Dockerfile (28.5.2) sets it up: user rootless (uid
# 1000) with subordinate ids 100000:65536 (Debian's useradd writes that range itself; a second line
# would make the kernel refuse rootlesskit's overlapping uid_map), the data directory owned by it, and a world-writable
# /run/user (added to the layer below: mmdebstrap leaves /run empty).
debian "$work/dind-rootless.rootfs.tar" ca-certificates,docker.io,iptables,tini,procps,rootlesskit,slirp4netns,uidmap,iproute2 \
  "install -m 0755 $here/images/dind-entrypoint.sh \"\$1\"/usr/local/bin/dockerd-entrypoint.sh" \
  'chroot "$1" useradd --uid 1000 --user-group --create-home --home-dir /home/rootless --comment Rootless rootless' \
  'grep -qx rootless:100000:65536 "$1"/etc/subuid && grep -qx rootless:100000:65536 "$1"/etc/subgid' \
  'mkdir -p "$1"/home/rootless/.local/share/docker && chroot "$1" chown -R rootless:rootless /home/rootless/.local'
echo "dind-rootless root filesystem after $(( $(date +%s) - start ))s" >&2
mkdir -p "$work/pause.root" && cp "$f/pause" "$work/pause.root/pause"
tar -C "$work/pause.root" -cf "$work/pause.rootfs.tar" .

# --- docker-archive tars: one layer, a config, a manifest naming the tag
python3 - "$work" <<'PY'
import hashlib, json, os, sys, tarfile, io
work = sys.argv[1]
images = {
    "buildkite-agent": ("scaledkite.local/buildkite-agent:3.138.3", ["buildkite-agent-entrypoint"], ["start"],
                        ["PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin",
                         "BUILDKITE_AGENT_CONFIG=/buildkite/buildkite-agent.cfg"]),
    "dind": ("scaledkite.local/dind:20.10.24", ["dockerd-entrypoint.sh"], [],
             ["PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"]),
    "dind-rootless": ("scaledkite.local/dind-rootless:20.10.24", ["dockerd-entrypoint.sh"], [],
                      ["PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin",
                       "DOCKERD_ROOTLESS_ROOTLESSKIT_NET=slirp4netns"], "rootless"),
    "pause": ("scaledkite.local/pause:1", ["/pause"], [], []),
}
for name, (tag, entrypoint, cmd, env, *user) in images.items():
    layer = os.path.join(work, name + ".rootfs.tar")
    if user:
        with tarfile.open(layer, "a") as t:
            info = tarfile.TarInfo("./run/user"); info.type = tarfile.DIRTYPE; info.mode = 0o1777
            t.addfile(info)
    h = hashlib.sha256()
    with open(layer, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    diff_id = "sha256:" + h.hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint, "Cmd": cmd, "Env": env, "WorkingDir": "/", **({"User": user[0]} if user else {})},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "k8s/local/build-images.sh"}],
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(os.path.join(work, name + ".tar"), "w") as out:
        for arcname, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(arcname); info.size = len(data); out.addfile(info, io.BytesIO(data))
        out.add(layer, arcname="layer.tar")
    os.remove(layer)
PY
rm -rf "$work/files" "$work/pause.root"
rm -rf "$out" && mv "$work" "$out"
echo "built ${images[*]} in $(( $(date +%s) - start ))s: $(du -sh "$out" | cut -f1)" >&2
echo "$out"
