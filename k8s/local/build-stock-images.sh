#!/usr/bin/env bash
# Builds local stand-ins for the stock images that Buildkite pipelines name, once per recipe, and
# prints the directory that holds them as docker-archive tars (what `ctr images import` takes). No
# registry is reachable, so containerd must already hold these when a pod names them; each tar is
# tagged with the fully-qualified name that the CRI resolves the short name to:
#   alpine.tar  docker.io/library/alpine:latest        busybox: /bin/sh is busybox ash, applets on PATH
#   bash.tar    docker.io/library/bash:latest          busybox + GNU bash (sh stays ash, as upstream)
#   node.tar    docker.io/library/node:22-alpine       busybox + node (Debian 12's: 18.x) and yarn
#   ruby.tar    docker.io/library/ruby:alpine          busybox + ruby (Debian 12's: 3.1)
#   curl.tar    docker.io/curlimages/curl:latest       busybox + curl and the CA bundle
#   nginx.tar   docker.io/library/nginx:latest         Debian 12 minbase + nginx in the foreground
# Tools are Debian 12's versions (from its packages, via mmdebstrap and this machine's apt sources),
# not upstream's, and upstream's entrypoint scripts are left out (each image's Cmd is upstream's). The alpine-based images are built the way alpine
# is laid out, a busybox userland plus the tool: packages are only unpacked (mmdebstrap's
# `extract` variant: no dpkg, apt or maintainer scripts in the image), and what their scripts would
# have done that matters is done here. The cache key is a hash of this recipe.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/scaledkite/stock-images"
key=$(cat "$0" $(find "$here/images/stock" -type f 2>/dev/null | sort) | sha256sum | cut -c1-16)
out="$cache_root/$key"
images=(alpine bash node ruby curl nginx)
have_all() { for i in "${images[@]}"; do [ -s "$out/$i.tar" ] || return 1; done; }
if have_all; then echo "$out"; exit 0; fi

for tool in mmdebstrap python3; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed: run 'apt-get install mmdebstrap' to build the stock images" >&2; exit 2; }
done
mirrors=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -s "$f" ] && mirrors+=("$f")
done
[ ${#mirrors[@]} -gt 0 ] || { echo "no apt sources on this machine: mmdebstrap needs Debian's packages" >&2; exit 2; }

start=$(date +%s)
work="$out.partial"
rm -rf "$work" && mkdir -p "$work"
slim=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*'
      --dpkgopt='path-exclude=/usr/share/lintian/*')

# alpine_like NAME PACKAGES: unpack busybox-static and PACKAGES (with their dependencies) into
# $work/NAME.root, then lay it out as an alpine root: every busybox applet linked where alpine's
# busybox puts it unless a package ships the real tool there, /bin/sh -> busybox (ash), alpine's
# /etc/passwd and /etc/group, and the system CA bundle ca-certificates' postinst would have written.
alpine_like() {
  local r="$work/$1.root"
  mmdebstrap --quiet --variant=extract --mode=root --include="busybox-static${2:+,$2}" "${slim[@]}" \
    bookworm "$r" "${mirrors[@]}"
  # mmdebstrap's own scaffolding and the host's name and resolver (the runtime mounts its own)
  rm -rf "$r"/etc/apt "$r"/etc/dpkg "$r"/var/lib/apt "$r"/var/lib/dpkg "$r"/var/cache/apt "$r"/var/log/apt \
    "$r"/etc/hostname "$r"/etc/resolv.conf "$r"/usr/share/initramfs-tools
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,usr/local/sbin,root,home,proc,sys,run,var/tmp}
  chmod 1777 "$r"/tmp "$r"/var/tmp && chmod 0700 "$r"/root
  local p; for p in $(chroot "$r" /bin/busybox --list-full); do
    [ -e "$r/$p" ] || [ -L "$r/$p" ] || ln -s /bin/busybox "$r/$p"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' > "$r"/etc/passwd
  printf 'root:x:0:root\nnogroup:x:65534:\nnobody:x:65534:\n' > "$r"/etc/group
  echo /bin/sh > "$r"/etc/shells
  if [ -d "$r"/usr/share/ca-certificates ]; then
    mkdir -p "$r"/etc/ssl/certs
    find "$r"/usr/share/ca-certificates -name '*.crt' | sort | xargs cat > "$r"/etc/ssl/certs/ca-certificates.crt
  fi
}

# alpine:latest: nothing but busybox.
alpine_like alpine ""
# bash:latest is alpine with bash added (upstream builds it into /usr/local/bin; Debian's is in /bin,
# which is on the same PATH); sh stays busybox ash there too.
alpine_like bash bash
echo /bin/bash >> "$work"/bash.root/etc/shells
# node:22-alpine: node and yarn on PATH, and upstream's `node` user (uid 1000). Debian names yarn
# `yarnpkg`; upstream has /usr/local/bin/yarn.
alpine_like node nodejs,yarnpkg
ln -s /usr/bin/yarnpkg "$work"/node.root/usr/local/bin/yarn
echo 'node:x:1000:1000:Linux User,,,:/home/node:/bin/sh' >> "$work"/node.root/etc/passwd
echo 'node:x:1000:' >> "$work"/node.root/etc/group
mkdir -p "$work"/node.root/home/node && chown 1000:1000 "$work"/node.root/home/node
alpine_like ruby ruby
# curlimages/curl is alpine with curl and ca-certificates (upstream runs as curl_user, uid 100;
# here it runs as root, which only allows more).
alpine_like curl curl,ca-certificates
echo "alpine-based roots after $(( $(date +%s) - start ))s" >&2

# nginx:latest is Debian 12 (bookworm-slim) with nginx, logs linked to the container's stdout and
# stderr and nginx started in the foreground, as upstream's Dockerfile does; here Debian's own
# nginx serves Debian's default site (enabled by nginx-common's postinst) from /var/www/html.
mmdebstrap --quiet --variant=minbase --mode=root --include=nginx "${slim[@]}" \
  --customize-hook='ln -sf /dev/stdout "$1"/var/log/nginx/access.log && ln -sf /dev/stderr "$1"/var/log/nginx/error.log' \
  --customize-hook='test -L "$1"/etc/nginx/sites-enabled/default && grep -q "Welcome to nginx!" "$1"/var/www/html/index.nginx-debian.html' \
  --customize-hook='rm -f "$1"/etc/hostname "$1"/etc/resolv.conf' \
  bookworm "$work/nginx.root" "${mirrors[@]}"
echo "nginx root after $(( $(date +%s) - start ))s" >&2

! grep -qF " $work/" /proc/mounts || { echo "something is still mounted under $work" >&2; exit 1; }
for i in "${images[@]}"; do  # /dev stays empty, as in any image: the runtime fills it
  rm -rf "$work/$i.root"/dev/* && tar -C "$work/$i.root" --numeric-owner --sort=name -cf "$work/$i.rootfs.tar" . && rm -rf "$work/$i.root"
done

# --- docker-archive tars: one layer, a config, a manifest naming the tag
python3 - "$work" <<'PY'
import hashlib, json, os, sys, tarfile, io
work = sys.argv[1]
path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
images = {  # name: (tag, Cmd, more config); upstream's Cmd, without its entrypoint scripts
    "alpine": ("docker.io/library/alpine:latest", ["/bin/sh"], {}),
    "bash": ("docker.io/library/bash:latest", ["bash"], {}),
    "node": ("docker.io/library/node:22-alpine", ["node"], {}),
    "ruby": ("docker.io/library/ruby:alpine", ["irb"], {}),
    "curl": ("docker.io/curlimages/curl:latest", ["curl"], {}),
    "nginx": ("docker.io/library/nginx:latest", ["nginx", "-g", "daemon off;"],
              {"ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT"}),
}
for name, (tag, cmd, more) in images.items():
    layer = os.path.join(work, name + ".rootfs.tar")
    h = hashlib.sha256()
    with open(layer, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd, "Env": [path], "WorkingDir": "/", **more},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h.hexdigest()]},
        "history": [{"created_by": "k8s/local/build-stock-images.sh"}],
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(os.path.join(work, name + ".tar"), "w") as out:
        for arcname, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(arcname); info.size = len(data); out.addfile(info, io.BytesIO(data))
        out.add(layer, arcname="layer.tar")
    os.remove(layer)
PY
rm -rf "$out" && mv "$work" "$out"
echo "built ${images[*]} in $(( $(date +%s) - start ))s: $(du -sh "$out" | cut -f1)" >&2
echo "$out"
