// SPDX-License-Identifier: Apache-2.0
// Shared by the Kubernetes kernel tests: Service and EndpointSlice objects for the list/watch
// server, and the clients (fixtures/lb-client.mjs) run from inside the balancer's cgroup.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { packageDir } from '../../src/loader/index.js';
import type { KubeObject } from './kube-apiserver.js';

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
