#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Provisioning for the Vagrant lab (run by `vagrant up` as root on each VM):
#   provision.sh ROLE SOURCE_IP TARGET_IP      ROLE is source or target
# Both: Node 24 (LTS), clang, llvm, libbpf, bpftool, openssh, the project built from /ebpfnet (through
# tools/bootstrap.sh, the same set-up step as `npm test`) and `ebpfnet` on PATH.
# target: a `lab` user that source logs in as, nothing attached yet.
# source: its SSH key installed on target, Prometheus scraping the target's filter metrics.
# Both: an HTTP server on port 80 answering "hello from ROLE".
# Running it again is safe: every step checks before it changes anything.
set -euo pipefail

role=${1:?usage: provision.sh source|target SOURCE_IP TARGET_IP}
source_ip=${2:?missing SOURCE_IP}
target_ip=${3:?missing TARGET_IP}
case "$role" in source | target) ;; *) echo "provision: unknown role $role" >&2; exit 2 ;; esac

say() { echo "provision[$role]: $*"; }
export DEBIAN_FRONTEND=noninteractive

# --- packages ------------------------------------------------------------------------------------------
say "installing packages"
apt-get update -qq
# Ubuntu ships bpftool in linux-tools, per kernel; linux-tools-generic is the fallback when the
# running kernel's own package is not in the archive (a box older than the archive).
tools="linux-tools-$(uname -r)"
apt-cache show "$tools" >/dev/null 2>&1 || tools=linux-tools-generic
apt-get install -y -qq --no-install-recommends \
  ca-certificates curl gnupg clang llvm libbpf-dev libbpf1 gcc make iproute2 iputils-ping \
  openssh-server openssh-client sshpass rsync linux-tools-common "$tools" >/dev/null

# Node 24 (LTS) from NodeSource, system-wide: these VMs are the lab's own, and `ebpfnet` on PATH runs
# on the system's node. Ubuntu 24.04's own nodejs is 18; ebpfnet needs what package.json's
# engines.node says (22.19+ or 24+).
if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 24 ]; then
  say "installing Node 24"
  install -d -m 0755 /etc/apt/keyrings
  curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key | gpg --dearmor --yes -o /etc/apt/keyrings/nodesource.gpg
  echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_24.x nodistro main" >/etc/apt/sources.list.d/nodesource.list
  apt-get update -qq
  apt-get install -y -qq nodejs >/dev/null
fi

# --- the project -----------------------------------------------------------------------------------------
say "building ebpfnet in /ebpfnet"
cd /ebpfnet
bash tools/bootstrap.sh --quiet
chmod +x dist/cli/main.js
ln -sf /ebpfnet/dist/cli/main.js /usr/local/bin/ebpfnet

# The private network's interface (eth1 or enp0s8, depending on the box), for the lab's commands.
lab_if=$(ip -o -4 addr show | awk -v ip="$([ "$role" = target ] && echo "$target_ip" || echo "$source_ip")" 'index($4, ip "/") == 1 { print $2; exit }')
if [ -z "$lab_if" ]; then
  say "no interface has the lab address; is the private network up?"
  exit 1
fi
cat >/etc/profile.d/ebpfnet-lab.sh <<ENV
# ebpfnet lab (written by vagrant/provision.sh)
export LAB_IF=$lab_if SOURCE_IP=$source_ip TARGET_IP=$target_ip
ENV
say "lab interface: $lab_if"

# --- target ----------------------------------------------------------------------------------------------
if [ "$role" = target ]; then
  # The user source logs in as. A password (lab) is enough on a host-only network and lets
  # source install its key with ssh-copy-id; the lab then uses the key.
  id lab >/dev/null 2>&1 || useradd --create-home --shell /bin/bash lab
  echo 'lab:lab' | chpasswd
  cat >/etc/ssh/sshd_config.d/50-ebpfnet-lab.conf <<'SSHD'
# ebpfnet lab: the lab user may log in with a password (host-only network)
Match User lab
    PasswordAuthentication yes
SSHD
  systemctl restart ssh
fi

# --- both: an HTTP server on port 80 ----------------------------------------------------------------------
# On target, a page to fetch while SSH and ping are dropped (the filter only drops what it is told);
# on source, the page target fetches under its stateful default deny (the reply passes as established).
install -d /srv/ebpfnet-lab
echo "hello from $role" >/srv/ebpfnet-lab/index.html
cat >/etc/systemd/system/ebpfnet-lab-http.service <<'UNIT'
[Unit]
Description=ebpfnet lab HTTP server (port 80)
After=network-online.target

[Service]
ExecStart=/usr/bin/python3 -m http.server 80 --directory /srv/ebpfnet-lab
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now ebpfnet-lab-http.service

# --- source ----------------------------------------------------------------------------------------------
if [ "$role" = source ]; then
  # The vagrant user's key, installed on target so `ssh lab@TARGET` needs no password.
  sudo -u vagrant bash -c '[ -f ~/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N "" -f ~/.ssh/id_ed25519'
  if sudo -u vagrant sshpass -p lab ssh-copy-id -o StrictHostKeyChecking=accept-new -i /home/vagrant/.ssh/id_ed25519.pub "lab@$target_ip" >/dev/null 2>&1; then
    say "SSH key installed on target (ssh lab@$target_ip)"
  else
    say "could not reach target to install the SSH key; run 'vagrant provision source' once target is up"
  fi

  # Prometheus scraping the target's filter (ebpfnet filter --metrics $target_ip:9100). Without
  # the recommended node exporter: it would take port 9100 on this VM for something else.
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  cat >/etc/prometheus/prometheus.yml <<PROM
# ebpfnet lab (written by vagrant/provision.sh)
global:
  scrape_interval: 5s
scrape_configs:
  - job_name: ebpfnet-filter
    static_configs:
      - targets: ["$target_ip:9100"]
        labels:
          host: target
PROM
  systemctl restart prometheus
  say "Prometheus on http://$source_ip:9090 scrapes http://$target_ip:9100/metrics"
fi

say "done"
