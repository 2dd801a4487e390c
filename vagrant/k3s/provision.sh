#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Provisioning for the k3s lab (run by `vagrant up` as root on each VM):
#   provision.sh ROLE NODE_IP SERVER_IP        ROLE is server or agent
# Both: Docker (to build the agent image from the repository's Dockerfile), the image imported into
# k3s's containerd, k3s itself. server: k3s with its kube-proxy off (--disable-kube-proxy; the
# agents take that setting from the server), then ebpfnet's manifests applied. agent: joins.
# Running it again is safe: every step checks before it changes anything.
set -euo pipefail

role=${1:?usage: provision.sh server|agent NODE_IP SERVER_IP}
node_ip=${2:?missing NODE_IP}
server_ip=${3:?missing SERVER_IP}
case "$role" in server | agent) ;; *) echo "provision: unknown role $role" >&2; exit 2 ;; esac

# a lab token on a host-only network; a real cluster uses the one k3s generates
TOKEN=ebpfnet-k3s-lab
say() { echo "provision[$role]: $*"; }
export DEBIAN_FRONTEND=noninteractive

say "installing packages"
apt-get update -qq
apt-get install -y -qq --no-install-recommends ca-certificates curl docker.io jq >/dev/null

# the interface that holds this node's lab address (eth1 or enp0s8, depending on the box)
lab_if=$(ip -o -4 addr show | awk -v ip="$node_ip" 'index($4, ip "/") == 1 { print $2; exit }')
if [ -z "$lab_if" ]; then
  say "no interface has $node_ip; is the private network up?"
  exit 1
fi

# --- the agent image --------------------------------------------------------------------------------
version=$(jq -r .version /ebpfnet/package.json)
image="ebpfnet:$version"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  say "building $image from /ebpfnet/Dockerfile"
  docker build -q -t "$image" /ebpfnet >/dev/null
fi

# --- k3s --------------------------------------------------------------------------------------------
# flannel on the lab interface (the NAT one is the same address on every VM); no servicelb and no
# traefik: this lab is about ClusterIP and NodePort Services
if [ "$role" = server ]; then
  if ! systemctl is-active --quiet k3s; then
    say "installing k3s (server, kube-proxy off)"
    curl -sfL https://get.k3s.io | K3S_TOKEN=$TOKEN INSTALL_K3S_EXEC="server \
      --disable-kube-proxy --disable=traefik --disable=servicelb \
      --node-ip=$node_ip --advertise-address=$node_ip --tls-san=$node_ip \
      --flannel-iface=$lab_if --write-kubeconfig-mode=644" sh - >/dev/null
  fi
else
  if ! systemctl is-active --quiet k3s-agent; then
    say "installing k3s (agent, joining https://$server_ip:6443)"
    curl -sfL https://get.k3s.io | K3S_URL="https://$server_ip:6443" K3S_TOKEN=$TOKEN \
      INSTALL_K3S_EXEC="agent --node-ip=$node_ip --flannel-iface=$lab_if" sh - >/dev/null
  fi
fi

# the image into k3s's containerd (imagePullPolicy IfNotPresent: no registry involved)
say "importing $image into k3s"
for _ in $(seq 1 60); do [ -S /run/k3s/containerd/containerd.sock ] && break; sleep 2; done
docker save "$image" | k3s ctr images import - >/dev/null

# kube-proxy's chains would mean it is running after all: then the lab would not test ebpfnet
if iptables -t nat -S KUBE-SERVICES >/dev/null 2>&1; then
  say "iptables has a KUBE-SERVICES chain: kube-proxy is running; this lab needs it off"
  exit 1
fi

# --- ebpfnet's manifests (server only; the DaemonSet reaches the agent node by itself) ----------------
if [ "$role" = server ]; then
  export KUBECONFIG=/etc/rancher/k3s/k3s.yaml
  for _ in $(seq 1 90); do k3s kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 2; done
  say "applying ebpfnet's manifests (the agent dials the API at $server_ip:6443, not its ClusterIP)"
  # the manifests come from the image itself: the same build that runs in the DaemonSet
  docker run --rm "$image" kubernetes manifests --image "$image" --api-server "$server_ip:6443" 2>/dev/null |
    k3s kubectl apply -f -
  k3s kubectl -n kube-system rollout status daemonset/ebpfnet --timeout=300s ||
    say "the DaemonSet is not ready yet: k3s kubectl -n kube-system get pods -l app.kubernetes.io/name=ebpfnet"
  k3s kubectl apply -f /ebpfnet/vagrant/k3s/demo.yaml
fi

say "done"
