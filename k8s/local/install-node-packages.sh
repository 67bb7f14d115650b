#!/usr/bin/env bash
# Installs, from Debian's packages, what the local cluster's real node and its image builds need:
# containerd, runc and the CNI plugins (the node), iptables and iproute2 (its network), mmdebstrap
# (the images' root filesystems), and git and openssh-server (the tests' private repositories over
# HTTP and SSH). Does nothing when all are there. Needs root.
set -euo pipefail
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v git >/dev/null || need+=(git)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
[ ${#need[@]} -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || { echo "installing ${need[*]} needs root: run 'sudo $0'" >&2; exit 2; }
echo "installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
