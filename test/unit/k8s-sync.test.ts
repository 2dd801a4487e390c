// SPDX-License-Identifier: Apache-2.0
// The watch half (src/k8s/sync.ts) with the real client against the test list/watch server, and the
// agent's Kubernetes share of the balancer (AgentLb) with the in-memory balancer: per-Service
// updates, restart after errors with backoff, 410 relists, typed and Kubernetes services side by
// side with conflicts refused and counted; the kubernetes: config section.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/agent/config.js';
import { AgentLb } from '../../src/agent/lb.js';
import { loadKubeConfig } from '../../src/k8s/kubeconfig.js';
import { KubeSync, type SyncSink } from '../../src/k8s/sync.js';
import { translateService, type K8sServiceSpec, type Translation } from '../../src/k8s/translate.js';
import { fakeBalancer } from '../helpers/agent-fakes.js';
import { KubeApiServer, type KubeObject } from '../helpers/kube-apiserver.js';

const svc = (name: string, ip: string, ns = 'default'): KubeObject => ({ metadata: { name, namespace: ns }, spec: { type: 'ClusterIP', clusterIP: ip, clusterIPs: [ip], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] } });
const slice = (svcName: string, name: string, ips: string[], ns = 'default'): KubeObject => ({
  metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svcName } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
});

const until = async (what: string, ok: () => boolean, ms = 8000): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

const backendsOf = (t: Translation | null | undefined): string[] => (t?.specs ?? []).flatMap((s) => s.backends.map((b) => `${s.name} ${b.name}`));

describe('kubernetes sync with the real client', () => {
  let dir: string;
  let api: KubeApiServer;
  let sync: KubeSync | null = null;
  const events: Array<{ kind: 'synced'; all: Map<string, Translation> } | { kind: 'changed'; key: string; t: Translation | null }> = [];
  const sink: SyncSink = { synced: (all) => events.push({ kind: 'synced', all }), changed: (key, t) => events.push({ kind: 'changed', key, t }) };
  const startSync = (): KubeSync => {
    const kc = new KubeConfig();
    kc.loadFromFile(api.writeKubeconfig(join(dir, 'kc')));
    sync = new KubeSync(kc, { nodeName: 'node-a', server: api.url, backoffMs: { base: 50, max: 200 } }, sink);
    sync.start();
    return sync;
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-k8s-sync-'));
    api = await KubeApiServer.start();
    events.length = 0;
  });
  afterEach(async () => {
    await sync?.stop();
    sync = null;
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('one full sync first, then each change retranslates only its Service; the node address makes NodePort VIPs', async () => {
    api.apply('nodes', { metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.10' }] } });
    for (let i = 0; i < 3; i++) {
      api.apply('services', svc(`s${i}`, `10.96.0.${i + 1}`));
      api.apply('endpointslices', slice(`s${i}`, `s${i}-a`, [`10.244.0.${i + 1}`]));
    }
    const s = startSync();
    await until('the first sync', () => s.everSynced);
    expect(events.map((e) => e.kind)).toEqual(['synced']);
    const all = (events[0] as { all: Map<string, Translation> }).all;
    expect([...all.keys()].sort()).toEqual(['default/s0', 'default/s1', 'default/s2']);
    expect(backendsOf(all.get('default/s1'))).toEqual(['10.96.0.2:80/tcp 10.244.0.2:8080']);
    await until('the watches', () => api.watches === 3);

    // a second slice of s1: s1 alone is handed on, with both slices merged
    api.apply('endpointslices', slice('s1', 's1-b', ['10.244.1.2']));
    await until('the change', () => events.length === 2);
    expect(events[1]).toMatchObject({ kind: 'changed', key: 'default/s1' });
    expect(backendsOf((events[1] as { t: Translation }).t)).toEqual(['10.96.0.2:80/tcp 10.244.0.2:8080', '10.96.0.2:80/tcp 10.244.1.2:8080']);
    // a change that moves no spec (a label) costs nothing downstream
    api.apply('services', { ...svc('s2', '10.96.0.3'), metadata: { name: 's2', namespace: 'default', labels: { x: 'y' } } });
    // a Service deleted: null
    api.delete('services', 's0');
    await until('the delete', () => events.length === 3);
    expect(events[2]).toEqual({ kind: 'changed', key: 'default/s0', t: null });
    // the node's address and a NodePort Service: a VIP on the node's address
    api.apply('services', { metadata: { name: 'np', namespace: 'default' }, spec: { type: 'NodePort', clusterIP: '10.96.0.9', ports: [{ name: 'http', port: 80, nodePort: 30080, protocol: 'TCP', targetPort: 8080 }] } });
    await until('the NodePort', () => events.length === 4);
    expect((events[3] as { t: Translation }).t.specs.map((x) => `${x.name} ${x.vipKind}`)).toEqual(['10.96.0.9:80/tcp clusterIP', '192.168.1.10:30080/tcp nodePort']);
    expect(s.status()).toMatchObject({ state: 'synced', node: { name: 'node-a', found: true, addresses: ['192.168.1.10'] }, counts: { services: 3, endpointSlices: 4 }, errors: 0 });
    // bookmarks were asked for on every watch
    expect(api.requests.filter((r) => r.startsWith('watch')).every((r) => r.endsWith('bookmarks'))).toBe(true);
    api.bookmark();
    await until('a bookmark', () => s.status().bookmarks === 3);
  });

  it('cut watches and a compacted history: restart with backoff, one relist, every difference handed on', async () => {
    api.apply('services', svc('a', '10.96.0.1'));
    api.apply('services', svc('b', '10.96.0.2'));
    api.apply('endpointslices', slice('a', 'a-1', ['10.244.0.1']));
    const s = startSync();
    await until('the first sync', () => s.everSynced);
    await until('the watches', () => api.watches === 3);
    await api.stop();
    api.delete('services', 'b');
    api.apply('endpointslices', slice('a', 'a-1', ['10.244.0.5']));
    api.apply('services', svc('c', '10.96.0.3'));
    api.compact();
    await until('the failure', () => s.status().state === 'retrying');
    expect(s.status().disconnectedSince).not.toBeNull();
    await api.resume();
    await until('converged', () => s.status().state === 'synced' && events.filter((e) => e.kind === 'changed').length >= 3);
    const last = new Map<string, Translation | null>();
    for (const e of events) if (e.kind === 'changed') last.set(e.key, e.t);
    expect(last.get('default/b')).toBeNull();
    expect(backendsOf(last.get('default/a'))).toEqual(['10.96.0.1:80/tcp 10.244.0.5:8080']);
    expect(last.get('default/c')?.specs.map((x) => x.name)).toEqual(['10.96.0.3:80/tcp']);
    const st = s.status();
    expect(st.errors).toBeGreaterThan(0);
    expect(st.restarts).toBeGreaterThan(0);
    // 3 first lists, and at least the services' and slices' relists after the 410
    expect(st.lists).toBeGreaterThanOrEqual(5);
    expect(api.requests.filter((r) => r.startsWith('list services')).length).toBeGreaterThanOrEqual(2);
  });

  it('a wrong token: retried, counted, said in status; never synced', async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(api.writeKubeconfig(join(dir, 'kc'), 'wrong-token'));
    sync = new KubeSync(kc, { nodeName: 'node-a', server: api.url, backoffMs: { base: 20, max: 50 } }, sink);
    sync.start();
    await until('a few errors', () => sync!.status().errors >= 6);
    const st = sync.status();
    expect(st).toMatchObject({ state: 'retrying', everSynced: false });
    expect(st.lastError!.message).toMatch(/HTTP 401/);
    expect(events).toEqual([]);
  });
});

describe('AgentLb: Kubernetes services beside typed ones', () => {
  const store = { save: async () => {}, audit: () => {} };
  const caller = { who: 'test', ifMatch: undefined };
  const t = (name: string, ip: string, backends: string[]): K8sServiceSpec[] =>
    translateService(
      { metadata: { name, namespace: 'default' }, spec: { clusterIP: ip, ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] } },
      [{ metadata: { name: `${name}-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': name } }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints: backends.map((b) => ({ addresses: [b], conditions: { ready: true } })) }],
      { nodeName: 'n', nodeAddresses: [] },
    ).specs;

  it('a typed service on a Kubernetes VIP is refused (409, counted); one from the config is shadowed and comes back when Kubernetes lets go', async () => {
    const b = fakeBalancer();
    const cfg = parseConfig('lb:\n  services:\n    - service: 10.96.0.1:80/tcp\n      backends: [10.0.0.9:80]\n    - service: 10.96.0.2:80/tcp\n      backends: [10.0.0.8:80]\n');
    const { lb } = AgentLb.open(undefined, cfg.lb, b.backend, store, { kubernetes: true });
    lb.replaceKubernetes(new Map([['default/web', t('web', '10.96.0.1', ['10.244.0.1'])]]));
    // Kubernetes' entry is in the kernel, the typed one is kept but shadowed
    expect(b.services.get('10.96.0.1:80/tcp')!.backends.map((x) => x.name)).toEqual(['10.244.0.1:8080']);
    expect(b.services.get('10.96.0.2:80/tcp')!.backends.map((x) => x.name)).toEqual(['10.0.0.8:80']);
    const v = lb.view();
    expect(v.services.map((s) => [s.id, s.name ?? null, s.shadowedBy ?? null])).toEqual([
      ['10.96.0.1:80/tcp', null, 'default/web:http'],
      ['10.96.0.2:80/tcp', null, null],
      ['10.96.0.1:80/tcp', 'default/web:http', null],
    ]);
    expect(lb.conflicts()).toEqual([{ service: '10.96.0.1:80/tcp', reason: expect.stringContaining('shadowed by Kubernetes service default/web:http') }]);
    expect(lb.conflictsTotal).toBe(1);
    // the API refuses a typed write on the VIP, and the state is unchanged
    await expect(lb.put('10.96.0.1:80/tcp', { backends: ['10.0.0.7:80'] }, caller)).rejects.toMatchObject({ code: 'EBPFNET_EXISTS', message: expect.stringContaining('belongs to Kubernetes service default/web:http') });
    await expect(lb.setAll([{ service: '10.96.0.1:80/tcp', backends: [] }], caller)).rejects.toMatchObject({ code: 'EBPFNET_EXISTS' });
    expect(lb.conflictsTotal).toBe(3);
    expect(b.services.get('10.96.0.1:80/tcp')!.backends.map((x) => x.name)).toEqual(['10.244.0.1:8080']);
    // DELETE of every typed service leaves Kubernetes' in place
    await lb.remove('10.96.0.2:80/tcp', caller);
    expect([...b.services.keys()]).toEqual(['10.96.0.1:80/tcp']);
    // Kubernetes drops the Service: the typed one comes back
    lb.updateKubernetes('default/web', null);
    expect(b.services.get('10.96.0.1:80/tcp')!.backends.map((x) => x.name)).toEqual(['10.0.0.9:80']);
    expect(lb.conflicts()).toEqual([]);
  });

  it('per-Service updates: only that Service is written; two Kubernetes Services on one VIP: the first keeps it', () => {
    const b = fakeBalancer();
    const { lb } = AgentLb.open(undefined, null, b.backend, store, { kubernetes: true });
    lb.replaceKubernetes(new Map([['default/a', t('a', '10.96.0.1', ['10.244.0.1'])], ['default/b', t('b', '10.96.0.2', ['10.244.0.2'])]]));
    b.calls.length = 0;
    lb.updateKubernetes('default/a', t('a', '10.96.0.1', ['10.244.0.1', '10.244.0.3']));
    expect(b.calls).toEqual(['upsert 10.96.0.1:80/tcp']);
    // c claims b's VIP: refused, counted; b's entry stays
    lb.updateKubernetes('default/c', t('c', '10.96.0.2', ['10.244.9.9']));
    expect(b.services.get('10.96.0.2:80/tcp')!.backends.map((x) => x.name)).toEqual(['10.244.0.2:8080']);
    expect(lb.conflicts()).toEqual([{ service: '10.96.0.2:80/tcp', reason: 'default/c:http also claims 10.96.0.2:80/tcp, held by default/b:http: refused until that one lets it go' }]);
    // b goes: c takes the VIP it was refused
    lb.updateKubernetes('default/b', null);
    expect(b.services.get('10.96.0.2:80/tcp')!.backends.map((x) => x.name)).toEqual(['10.244.9.9:8080']);
    expect(lb.kubernetesOrigin('10.96.0.2:80/tcp')).toMatchObject({ service: 'c' });
    expect(lb.conflicts()).toEqual([]);
    // a moves to another VIP: the old one is deleted
    b.calls.length = 0;
    lb.updateKubernetes('default/a', t('a', '10.96.0.5', ['10.244.0.1']));
    expect(b.calls).toEqual(['upsert 10.96.0.5:80/tcp', 'remove 10.96.0.1:80/tcp']);
    expect([...b.services.keys()].sort()).toEqual(['10.96.0.2:80/tcp', '10.96.0.5:80/tcp']);
    expect(lb.kubernetesOrigin('10.96.0.5:80/tcp')).toMatchObject({ namespace: 'default', service: 'a', portName: 'http' });
  });

  it('at start with Kubernetes on, what is pinned beyond the typed services stays until the first sync', () => {
    const b = fakeBalancer();
    const first = AgentLb.open(undefined, null, b.backend, store, { kubernetes: true });
    first.lb.replaceKubernetes(new Map([['default/a', t('a', '10.96.0.1', ['10.244.0.1'])]]));
    const saved = first.lb.saved;
    first.lb.close();
    const { lb } = AgentLb.open(saved, null, b.backend, store, { kubernetes: true });
    expect([...b.services.keys()]).toEqual(['10.96.0.1:80/tcp']);
    lb.replaceKubernetes(new Map());
    expect([...b.services.keys()]).toEqual([]);
  });
});

describe('kubernetes: config and kubeconfig', () => {
  it('reads the section, refuses bad values in one line', () => {
    expect(parseConfig('kubernetes:\n  kubeconfig: /root/.kube/config\n  nodeName: node-a\n').kubernetes).toEqual({ kubeconfig: '/root/.kube/config', nodeName: 'node-a' });
    expect(parseConfig('kubernetes: {}\n').kubernetes).toEqual({});
    expect(parseConfig('lb: {}\n').kubernetes).toBeNull();
    expect(() => parseConfig('kubernetes:\n  nodeName: Node_A\n', 'a.yaml')).toThrow("read config a.yaml:2: kubernetes.nodeName: 'Node_A' is not a Kubernetes node name");
    expect(() => parseConfig('kubernetes:\n  kubeconfg: x\n', 'a.yaml')).toThrow("kubernetes: unknown key 'kubeconfg'");
    expect(() => parseConfig('kubernetes: yes\n', 'a.yaml')).toThrow('kubernetes is not a mapping');
  });

  it('a kubeconfig from a path, from $KUBECONFIG, or a one-line error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebpfnet-kc-'));
    try {
      const f = join(dir, 'kc');
      writeFileSync(f, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster: { server: 'https://10.0.0.1:6443' } }], users: [{ name: 'u', user: { token: 't' } }], contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }], 'current-context': 'x' }));
      expect(loadKubeConfig(f, {})).toMatchObject({ source: `file ${f}`, server: 'https://10.0.0.1:6443' });
      expect(loadKubeConfig(undefined, { KUBECONFIG: `${join(dir, 'nope')}:${f}` })).toMatchObject({ source: `file ${f}` });
      expect(() => loadKubeConfig(join(dir, 'nope'), {})).toThrow(`kubernetes: kubeconfig ${join(dir, 'nope')}: no such file`);
      writeFileSync(join(dir, 'empty'), JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [], users: [], contexts: [] }));
      expect(() => loadKubeConfig(join(dir, 'empty'), {})).toThrow(/its current context names no cluster/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
