# SPDX-License-Identifier: Apache-2.0
# The agent image for `ebpfnet kubernetes manifests` (the DaemonSet runs `ebpfnet agent` from it):
#   docker build -t ebpfnet:0.1.0 .          (the tag the manifests use by default: ebpfnet:VERSION)
# Two stages: the build has clang and the dev dependencies (tsc); the image has Node 24, libbpf and
# the production dependencies only. The BPF objects are CO-RE, built against the committed vmlinux.h
# so the build does not depend on the build host's kernel.
# x86-64 only for now: bpf/include/fallback holds the vmlinux.h of that architecture.

FROM node:24-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: koffi ships prebuilt binaries; package.json's allowScripts forbids its script anyway
RUN npm ci --ignore-scripts
COPY . .
RUN node tools/gen-maps.mjs --check \
 && npx tsc -p . \
 && node tools/build-bpf.mjs --fallback-vmlinux \
 && npm pack --ignore-scripts --pack-destination /tmp \
 && mkdir /pkg && tar -xzf /tmp/ebpfnet-*.tgz -C /pkg --strip-components=1

FROM node:24-bookworm-slim
# libbpf1: the library the loader opens (libbpf.so.1) through koffi
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ebpfnet
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
# what the published package holds (package.json "files"): dist, the BPF objects, maps, schemas
COPY --from=build /pkg/ ./
RUN chmod +x dist/cli/main.js && ln -s /opt/ebpfnet/dist/cli/main.js /usr/local/bin/ebpfnet
# runs as root in the pod (the agent checks uid 0); the DaemonSet grants only BPF, NET_ADMIN, SYS_ADMIN
ENTRYPOINT ["ebpfnet"]
CMD ["agent"]
