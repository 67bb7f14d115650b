#!/usr/bin/env bash
# Builds the Kubernetes binaries the local cluster runs from source through the Go module proxy,
# once per version, into the user's cache directory, and prints the directory that holds them:
# the control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler), the real
# node's kubelet, and a kubectl of the same version. Only the binaries the cache lacks are built.
#
#   KUBERNETES_VERSION  pinned below; EKS supports it and it has native sidecars (stable since 1.33)
#   KUBEBUILDER_ASSETS  a directory that already holds all the binaries: used as is, nothing built
set -euo pipefail

K8S_VERSION="${KUBERNETES_VERSION:-1.34.4}"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/scaledkite/controlplane"
out="$cache_root/v$K8S_VERSION"
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

have_all() { for b in "${bins[@]}"; do [ -x "$1/$b" ] || return 1; done; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  have_all "$KUBEBUILDER_ASSETS" || { echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of: ${bins[*]}; unset it to build from source" >&2; exit 2; }
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi
if have_all "$out"; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "go is not installed: install Go >= 1.24 to build the local control plane, or set KUBEBUILDER_ASSETS" >&2; exit 2; }

minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
patch="${K8S_VERSION##*.}"
staging_version="v0.$minor.$patch"
work="$cache_root/build-v$K8S_VERSION"
mkdir -p "$work/kube" "$work/etcd" "$out.partial"
# keep what an earlier build of this version made
for b in "${bins[@]}"; do [ -x "$out/$b" ] && [ ! -x "$out.partial/$b" ] && cp "$out/$b" "$out.partial/$b"; done
missing=(); for b in "${kube_bins[@]}"; do [ -x "$out.partial/$b" ] || missing+=("k8s.io/kubernetes/cmd/$b"); done
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
start=$(date +%s)

# --- Kubernetes: a module that requires k8s.io/kubernetes and points each staging module at its release.
kube_mod_file=$(cd "$work/kube" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -f "$kube_mod_file" ] || { echo "could not download k8s.io/kubernetes@v$K8S_VERSION" >&2; exit 1; }
etcd_version=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$kube_mod_file")
{
  echo "module scaledkite.local/controlplane"
  echo
  echo "go 1.24.0"
  echo
  echo "require k8s.io/kubernetes v$K8S_VERSION"
  echo
  # every "k8s.io/<m> => ./staging/src/k8s.io/<m>" line of Kubernetes' own go.mod, re-pointed at the release
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#replace \1 => \1 '"$staging_version"'#p' "$kube_mod_file"
} > "$work/kube/go.mod"
cat > "$work/kube/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
# one go build for all of them, so shared packages compile once
if [ ${#missing[@]} -gt 0 ]; then
  (cd "$work/kube" && { go mod tidy >/dev/null 2>&1 || true; }
   go build -trimpath -ldflags "$ldflags" -o "$out.partial/" "${missing[@]}")
fi

# --- etcd: its own module (its go.mod has relative replaces, so require it and build its root package).
cat > "$work/etcd/go.mod" <<GOMOD
module scaledkite.local/etcd

go 1.24.0

require go.etcd.io/etcd/server/v3 $etcd_version
GOMOD
cat > "$work/etcd/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
if [ ! -x "$out.partial/etcd" ]; then
  (cd "$work/etcd" && { go mod tidy >/dev/null 2>&1 || true; }
   go build -trimpath -ldflags "-s -w" -o "$out.partial/etcd" go.etcd.io/etcd/server/v3)
fi

rm -rf "$out" && mv "$out.partial" "$out"
echo "built ${bins[*]} (Kubernetes v$K8S_VERSION, etcd $etcd_version) in $(( $(date +%s) - start ))s" >&2
echo "$out"
