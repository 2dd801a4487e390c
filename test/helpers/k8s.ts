// SPDX-License-Identifier: Apache-2.0
// Shared by the Kubernetes kernel tests: Service and EndpointSlice objects for the list/watch
// server, the clients (fixtures/lb-client.mjs) run from inside the balancer's cgroup, and the
// node an agent runs on (its cgroup, kubeconfig, config and list/watch server) with its teardown.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureCgroup2, packageDir } from '../../src/loader/index.js';
import { CliProcess, runCli } from './cli.js';
import { KubeApiServer, type KubeObject } from './kube-apiserver.js';

const CLIENT = join(packageDir(), 'test', 'kernel', 'fixtures', 'lb-client.mjs');

export interface Seen {
  names: Record<string, number>;
  errors: Record<string, number>;
}

export type Cond = { ready: boolean; serving?: boolean; terminating?: boolean };
export const READY: Cond = { ready: true };

/** A ClusterIP Service in `default` with one port `http` 80/TCP to the named targetPort `web`, unless `extra` says otherwise. */
export const k8sService = (name: string, ip: string, extra: Record<string, unknown> = {}): KubeObject => ({
  metadata: { name, namespace: 'default' },
  spec: { type: 'ClusterIP', clusterIP: ip, clusterIPs: [ip], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'web' }], ...extra },
});

export interface SliceOpts {
  addressType?: 'IPv4' | 'IPv6';
  ports?: Array<{ name: string; port: number; protocol: string }>;
  /** every endpoint's nodeName unless the endpoint names its own */
  node: string;
}

/** An EndpointSlice of Service `svc`; by default its port `http` is 8080/TCP (what `web` resolves to). */
export const k8sSlice = (svc: string, name: string, eps: Array<[string, Cond] | [string, Cond, string]>, opts: SliceOpts): KubeObject => ({
  metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': svc } },
  addressType: opts.addressType ?? 'IPv4',
  ports: opts.ports ?? [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: eps.map(([ip, conditions, node]) => ({ addresses: [ip], conditions: { serving: conditions.ready, terminating: false, ...conditions }, nodeName: node ?? opts.node })),
});

/** Runs lb-client.mjs ARGS from a process in cgroup `cg` (async: an API server in this process keeps answering) and parses its JSON line. */
export const inCgroup = <T>(cg: string, args: Array<string | number>): Promise<T> =>
  new Promise((resolve, reject) => {
    const c = spawn('sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec ${process.execPath} ${CLIENT} ${args.join(' ')}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d));
    c.stderr.on('data', (d: Buffer) => (err += d));
    c.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`lb-client exited ${code}: ${err}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as T);
    });
  });

/** N sequential TCP connects to VIP:PORT from cgroup `cg`. */
export const connectFrom = async (cg: string, vip: string, n: number, port = 80): Promise<Seen> => {
  const r = await inCgroup<Seen>(cg, ['tcp', vip, port, n]);
  return { names: r.names, errors: r.errors };
};

/** Exactly one backend name answered, and nothing failed. */
export const only = (name: string) => (s: Seen): boolean => Object.keys(s.errors).length === 0 && Object.keys(s.names).join() === name;

/**
 * What an agent under test runs on: the balancer's cgroup, a directory with the kubeconfig and
 * the config (`lb.cgroup`, `kubernetes.kubeconfig`, `nodeName`), the list/watch server holding the
 * Node with `nodeAddr`, and pins under their own root (`env` points the CLI there).
 */
export interface K8sNode {
  cg: string;
  dir: string;
  api: KubeApiServer;
  env: NodeJS.ProcessEnv;
  pinRoot: string;
  agents: CliProcess[];
}

export async function makeK8sNode(tag: string, node: string, nodeAddr: string): Promise<K8sNode> {
  const pinRoot = `/sys/fs/bpf/ebpfnet-test-${tag}-${process.pid}`;
  const cg = join(ensureCgroup2().path, `ebpfnet-${tag}-test-${process.pid}`);
  mkdirSync(cg);
  const dir = mkdtempSync(join(tmpdir(), `ebpfnet-${tag}-`));
  const api = await KubeApiServer.start();
  api.writeKubeconfig(join(dir, 'kubeconfig'));
  writeFileSync(join(dir, 'config.yaml'), `lb:\n  cgroup: ${cg}\nkubernetes:\n  kubeconfig: ${join(dir, 'kubeconfig')}\n  nodeName: ${node}\n`);
  api.apply('nodes', { metadata: { name: node }, status: { addresses: [{ type: 'InternalIP', address: nodeAddr }] } });
  return { cg, dir, api, env: { ...process.env, EBPFNET_LB_PIN_DIR: `${pinRoot}/lb` }, pinRoot, agents: [] };
}

/** Starts `ebpfnet agent` on the node's config; resolves once its first sync made it ready. */
export async function startK8sAgent(n: K8sNode): Promise<{ url: string; proc: CliProcess }> {
  const proc = new CliProcess(['agent', '--config', join(n.dir, 'config.yaml'), '--state-dir', join(n.dir, 'state'), '--listen', '127.0.0.1:0'], { env: n.env });
  n.agents.push(proc);
  const m = await proc.waitFor(/api: (http:\/\/[\d.]+:\d+)\/v1/);
  await proc.waitFor(/"msg":"ready"/);
  return { url: m[1], proc };
}

/** Removes what makeK8sNode and its agents made: agents, the agent's state and pins, the server, cgroup, files. */
export async function removeK8sNode(n: K8sNode | undefined): Promise<void> {
  if (!n) return;
  for (const a of n.agents) await a.stop('SIGKILL');
  runCli(['agent', '--cleanup', '--state-dir', join(n.dir, 'state')], { env: n.env });
  if (existsSync(`${n.pinRoot}/lb`)) runCli(['lb', 'detach'], { env: n.env });
  await n.api.stop();
  if (existsSync(n.cg)) rmdirSync(n.cg);
  rmSync(n.pinRoot, { recursive: true, force: true });
  rmSync(n.dir, { recursive: true, force: true });
}
