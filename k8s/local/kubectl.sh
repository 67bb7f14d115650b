#!/usr/bin/env bash
# npm run kubectl -- ARGS: the kubectl built with the local cluster (same version), on its kubeconfig.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(bash "$root/k8s/local/build-controlplane.sh")
kubeconfig="${SCALEDKITE_LOCAL_DIR:-$root/.local-cluster}/kubeconfig"
[ -f "$kubeconfig" ] || { echo "the local cluster is not running: start it with 'npm run local-cluster -- up'" >&2; exit 3; }
exec "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"
