// SPDX-License-Identifier: Apache-2.0
// `ebpfnet kubernetes` (alias `k8s`): the agent as a cluster's service proxy. `manifests` prints
// what `kubectl apply` needs to run it on every node.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { EbpfnetError } from '../errors.js';
import { DEFAULT_NAMESPACE, manifests, manifestsYaml, type ManifestOptions } from '../k8s/manifests.js';
import { parseIp } from '../lb/addr.js';
import { packageDir } from '../loader/paths.js';
import type { KubernetesStatus } from '../agent/kubernetes.js';
import { AgentClient, withAgentOptions, type AgentOptions } from './agent-client.js';
import { DEFAULT_LISTEN } from './agent.js';
import { printJson, wantsJson, withOutputOption, type OutputOptions } from './output.js';
import { table } from './present.js';

const usage = (op: string, detail: string, hint: string): EbpfnetError => new EbpfnetError('EBPFNET_USAGE', op, detail, { hint });

const version = (): string => (JSON.parse(readFileSync(join(packageDir(), 'package.json'), 'utf8')) as { version: string }).version;

/** The image a user builds from the repository's Dockerfile (no registry publishes one). */
export const defaultImage = (): string => `ebpfnet:${version()}`;

/** A namespace name: an RFC 1123 label, as the API requires. */
export function checkNamespace(v: string): string {
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v) || v.length > 63)
    throw usage('kubernetes manifests', `'${v}' is not a namespace name`, 'lower-case letters, digits and -, at most 63, e.g. kube-system');
  return v;
}

export function checkImage(v: string): string {
  if (!v || /\s/.test(v)) throw usage('kubernetes manifests', `'${v}' is not an image reference`, 'for example ebpfnet:0.1.0 or registry.example.com/ebpfnet:0.1.0');
  return v;
}

/** `HOST:PORT`, `[IPv6]:PORT`: where the API server itself listens. */
export function parseApiServer(v: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(v) ?? /^([^:\[\]]+):(\d{1,5})$/.exec(v);
  const bad = (): EbpfnetError => usage('kubernetes manifests', `--api-server '${v}' is not HOST:PORT`, "the control plane's own address, e.g. 192.168.56.11:6443 or [fd00::11]:6443");
  if (!m) throw bad();
  const port = Number(m[2]);
  const host = m[1];
  const v6 = v.startsWith('[');
  if (port < 1 || port > 65535) throw bad();
  if (v6 ? parseIp(host)?.family !== 6 : !(parseIp(host) || /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/i.test(host))) throw bad();
  return { host, port };
}

interface ManifestsOptions extends OutputOptions {
  image: string;
  namespace: string;
  apiServer?: { host: string; port: number };
}

function registerManifests(k8s: Command): void {
  withOutputOption(
    k8s
      .command('manifests')
      .description('print the ServiceAccount, ClusterRole, binding, config and DaemonSet that run the agent on every node (kubectl apply -f -)')
      .option('--image <ref>', 'the agent image, built from the Dockerfile (default: ebpfnet:VERSION)', checkImage)
      .option('--namespace <ns>', 'where the agent runs', checkNamespace, DEFAULT_NAMESPACE)
      .option('--api-server <host:port>', "the API server's own address: a cluster without kube-proxy cannot reach its ClusterIP before the agent runs", parseApiServer),
    { synonyms: { yaml: 'text' }, json: 'a v1 List, which kubectl apply takes as well' },
  ).action((opts: ManifestsOptions) => {
    const o: ManifestOptions = { image: opts.image ?? defaultImage(), namespace: opts.namespace, ...(opts.apiServer ? { apiServer: opts.apiServer } : {}) };
    if (!opts.apiServer) {
      // stderr: stdout is piped into kubectl
      process.stderr.write("note: no --api-server: the agent will dial the API's ClusterIP, which nothing serves in a cluster without kube-proxy until the agent runs; give the control plane's address\n");
    }
    if (wantsJson(opts)) printJson({ apiVersion: 'v1', kind: 'List', items: manifests(o).map((m) => m.object) });
    else process.stdout.write(manifestsYaml(o, ` ebpfnet ${version()}: the agent as each node's service proxy (kubectl apply -f -)`));
  });
}

const ago = (s: number | null): string => (s === null ? 'never' : s < 1 ? 'just now' : `${s < 120 ? s.toFixed(1) : Math.round(s)} s ago`);

/** `kubernetes status` as text: one line per fact, then conflicts and refused ports. */
export function statusText(st: KubernetesStatus, agent: string): string {
  const state =
    st.state === 'synced'
      ? `synced (since ${st.syncedAt})`
      : st.state === 'starting'
        ? 'starting: no full sync yet (the balancer keeps what was pinned)'
        : `retrying since ${st.disconnectedSince}${st.everSynced ? '' : ', no full sync yet'}: the datapath keeps its last state`;
  const lines = [
    `kubernetes sync of the agent at ${agent}: ${state}`,
    `  api server:   ${st.server} (${st.source})`,
    `  node:         ${st.node.name}${st.node.found ? `: ${st.node.addresses.join(', ') || 'no addresses'}` : ' (not found in the API: NodePort services get no node address)'}`,
    `  last contact: ${ago(st.lagSeconds)}${st.lastApplyMs !== null ? `; last change applied in ${st.lastApplyMs} ms` : ''}`,
    `  seen:         ${st.counts.services} services (${st.counts.skipped} skipped), ${st.counts.endpointSlices} endpoint slices; ${st.vips} VIPs in the balancer`,
    `  lists:        ${st.lists}; watch restarts ${st.restarts}; bookmarks ${st.bookmarks}`,
    `  errors:       ${st.errors}${st.lastError ? ` (last: ${st.lastError.time} ${st.lastError.resource}: ${st.lastError.message})` : ''}; failed balancer writes ${st.applyErrors}`,
    `  conflicts:    ${st.conflicts.length} now, ${st.conflictsTotal} since start`,
  ];
  if (st.conflicts.length) lines.push('', table(['service', 'conflict'], st.conflicts.map((c) => [c.service, c.reason])));
  const refused = st.refused.filter((r) => !r.reason.startsWith('skipped: '));
  if (refused.length) lines.push('', table(['port', 'not balanced'], refused.map((r) => [r.port, r.reason])));
  return lines.join('\n');
}

function registerStatus(k8s: Command): void {
  withOutputOption(
    withAgentOptions(k8s.command('status').description("the agent's Kubernetes sync: state, lag, counts, errors and conflicts (through its API, GET /v1/kubernetes/status)")),
  ).action(async (opts: AgentOptions & OutputOptions) => {
    const json = wantsJson(opts);
    const agent = opts.agent ?? `http://${DEFAULT_LISTEN}`;
    const { body } = await new AgentClient({ ...opts, agent }).call<KubernetesStatus>('GET', '/v1/kubernetes/status');
    if (json) printJson({ agent, ...body });
    else process.stdout.write(`${statusText(body, agent)}\n`);
  });
}

export function registerKubernetes(program: Command): void {
  const k8s = program.command('kubernetes').alias('k8s').description("Kubernetes: the agent as each node's service proxy (instead of kube-proxy)");
  registerManifests(k8s);
  registerStatus(k8s);
}
