#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The k3s lab's check, on k3s-server as root: the demo Service answers through ebpfnet (no
# kube-proxy) from a pod (by DNS name: CoreDNS is itself a ClusterIP Service) and from the node
# (ClusterIP, and NodePort on the node's own address). Exits non-zero on the first failure.
set -euo pipefail
export KUBECONFIG=/etc/rancher/k3s/k3s.yaml
kc() { k3s kubectl "$@"; }
say() { echo "demo: $*"; }
fail() { say "FAIL: $*"; exit 1; }

kc -n kube-system rollout status daemonset/ebpfnet --timeout=180s >/dev/null || fail "ebpfnet's DaemonSet is not ready (kc -n kube-system logs ds/ebpfnet)"
kc rollout status deployment/demo --timeout=180s >/dev/null || fail "the demo pods are not ready"
vip=$(kc get service demo -o jsonpath='{.spec.clusterIP}')
node_ip=$(kc get node "$(hostname)" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
say "demo is $vip:80 (NodePort $node_ip:30080); backends: $(kc get endpointslices -l kubernetes.io/service-name=demo -o jsonpath='{.items[*].endpoints[*].addresses[0]}')"

# several requests: both pods answer (the balancer spreads new connections)
seen() { sort -u | tr '\n' ' '; }
from_node=$(for _ in $(seq 1 20); do curl -sf --max-time 3 "http://$vip/hostname" && echo; done | seen)
[ -n "$from_node" ] || fail "curl http://$vip/hostname from the node got nothing"
say "from the node, ClusterIP: $from_node"
from_np=$(for _ in $(seq 1 20); do curl -sf --max-time 3 "http://$node_ip:30080/hostname" && echo; done | seen)
[ -n "$from_np" ] || fail "curl http://$node_ip:30080/hostname from the node got nothing"
say "from the node, NodePort: $from_np"

kc delete pod demo-client --ignore-not-found --wait=true >/dev/null
# shellcheck disable=SC2016 # the loop runs in the pod's shell
from_pod=$(kc run demo-client --image=curlimages/curl:8.11.1 --restart=Never --rm -i --quiet --command -- \
  sh -c 'for i in $(seq 1 20); do curl -sf --max-time 3 http://demo.default.svc.cluster.local/hostname && echo; done' | seen) ||
  fail "the client pod could not reach demo.default.svc.cluster.local"
[ -n "$from_pod" ] || fail "curl from a pod got nothing"
say "from a pod, by name: $from_pod"
say "ok: Services answer without kube-proxy"
