#!/bin/sh
# The local dind images' entrypoint (scaledkite.local/dind and scaledkite.local/dind-rootless). It
# treats its arguments the way the stock docker:dind and docker:dind-rootless images' shared
# dockerd-entrypoint.sh does (docker-library/docker, 28/dind/dockerd-entrypoint.sh at "Update 28 to
# 28.5.2"), so tests of the worker pod exercise the stock behaviour:
#   - no arguments, or a first argument that starts with "-": `dockerd` and the default listeners are
#     put in front: the unix socket (or DOCKER_HOST when that is a unix:// address; as a non-root user
#     $XDG_RUNTIME_DIR/docker.sock) and, with DOCKER_TLS_CERTDIR empty, tcp://0.0.0.0:2375 (with TLS,
#     0.0.0.0:2376: the certificates are not modelled here, so TLS is refused);
#   - a first argument `dockerd`: passed through, run under an init (tini, as docker-init there);
#     as a non-root user (the rootless image runs as uid 1000), after the same checks as stock
#     (rootlesskit present, /etc/subuid and /etc/subgid entries, writable HOME and XDG_RUNTIME_DIR,
#     user namespaces allowed), inside `rootlesskit` with the stock flags;
#   - anything else: run as given.
# Left out: TLS certificate generation, the legacy-iptables probe and moby's hack/dind cgroup
# wrapper. The stock rootless default network driver is vpnkit, which Debian does not package: the
# rootless image sets DOCKERD_ROOTLESS_ROOTLESSKIT_NET=slirp4netns, the alternative stock documents.
set -eu
uid="$(id -u)"
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  if [ "$uid" = 0 ]; then socket='unix:///var/run/docker.sock'; else socket="unix://${XDG_RUNTIME_DIR:-/run/user/$uid}/docker.sock"; fi
  case "${DOCKER_HOST:-}" in unix://*) socket="$DOCKER_HOST" ;; esac
  if [ -n "${DOCKER_TLS_CERTDIR:-}" ]; then
    echo "dind-entrypoint: DOCKER_TLS_CERTDIR is set, but this local image does not make TLS certificates; set it to \"\"" >&2
    exit 1
  fi
  set -- dockerd --host="$socket" --host=tcp://0.0.0.0:2375 "$@"
  DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS="${DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS:-} -p 0.0.0.0:2375:2375/tcp"
fi
if [ "$1" = dockerd ]; then
  find /run /var/run -iname 'docker*.pid' -delete 2>/dev/null || :
  set -- tini -- "$@"
  if [ "$uid" != 0 ]; then
    command -v rootlesskit >/dev/null || { echo "error: attempting to run rootless dockerd but missing 'rootlesskit' (perhaps the 'docker:dind-rootless' image variant is intended?)" >&2; exit 1; }
    user="$(id -un 2>/dev/null || :)"
    if ! grep -qE "^($uid${user:+|$user}):" /etc/subuid || ! grep -qE "^($uid${user:+|$user}):" /etc/subgid; then
      echo "error: attempting to run rootless dockerd but missing necessary entries in /etc/subuid and/or /etc/subgid for $uid" >&2; exit 1
    fi
    : "${XDG_RUNTIME_DIR:=/run/user/$uid}"
    export XDG_RUNTIME_DIR
    if ! mkdir -p "$XDG_RUNTIME_DIR" || [ ! -w "$XDG_RUNTIME_DIR" ] || ! mkdir -p "$HOME/.local/share/docker" || [ ! -w "$HOME/.local/share/docker" ]; then
      echo "error: attempting to run rootless dockerd but need writable HOME ($HOME) and XDG_RUNTIME_DIR ($XDG_RUNTIME_DIR) for user $uid" >&2; exit 1
    fi
    if [ -f /proc/sys/user/max_user_namespaces ] && [ "$(cat /proc/sys/user/max_user_namespaces)" = 0 ]; then
      echo "error: attempting to run rootless dockerd but need 'user.max_user_namespaces' (/proc/sys/user/max_user_namespaces) set to a sufficiently large value" >&2; exit 1
    fi
    # shellcheck disable=SC2086 # word splitting of the flags is what stock does
    exec rootlesskit --net="${DOCKERD_ROOTLESS_ROOTLESSKIT_NET:-vpnkit}" --mtu="${DOCKERD_ROOTLESS_ROOTLESSKIT_MTU:-1500}" \
      --disable-host-loopback --port-driver=builtin --copy-up=/etc --copy-up=/run ${DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS:-} "$@"
  fi
fi
exec "$@"
