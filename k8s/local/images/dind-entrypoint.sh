#!/bin/sh
# The local dind image's entrypoint. It treats its arguments the way the stock docker:dind image's
# dockerd-entrypoint.sh does (docker-library/docker, 29/dind/dockerd-entrypoint.sh), so tests of the
# worker pod exercise the stock behaviour:
#   - no arguments, or a first argument that starts with "-": `dockerd` and the default listeners are
#     put in front: the unix socket (or DOCKER_HOST when that is a unix:// address) and, with
#     DOCKER_TLS_CERTDIR empty, tcp://0.0.0.0:2375 (with TLS, 0.0.0.0:2376: the certificates are not
#     modelled here, so TLS is refused);
#   - a first argument `dockerd`: passed through, run under an init (tini, as docker-init there);
#   - anything else: run as given.
# Left out: TLS certificate generation, rootless mode, the legacy-iptables probe and moby's
# hack/dind cgroup wrapper.
set -eu
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  socket='unix:///var/run/docker.sock'
  case "${DOCKER_HOST:-}" in unix://*) socket="$DOCKER_HOST" ;; esac
  if [ -n "${DOCKER_TLS_CERTDIR:-}" ]; then
    echo "dind-entrypoint: DOCKER_TLS_CERTDIR is set, but this local image does not make TLS certificates; set it to \"\"" >&2
    exit 1
  fi
  set -- dockerd --host="$socket" --host=tcp://0.0.0.0:2375 "$@"
fi
if [ "$1" = dockerd ]; then
  find /run /var/run -iname 'docker*.pid' -delete || :
  set -- tini -- "$@"
fi
exec "$@"
