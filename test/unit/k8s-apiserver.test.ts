// SPDX-License-Identifier: Apache-2.0
// The list/watch server of test/helpers/kube-apiserver.ts, driven by the real
// @kubernetes/client-node through a kubeconfig file, as the agent drives it: what the tests of the
// agent's Kubernetes sync rely on is checked here against the client (paged lists, watches from a
// version, bookmarks, 410 after compaction, token auth, the server going away and coming back).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, DiscoveryV1Api, KubeConfig, ListWatch, Watch, makeInformer, type V1Service } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KubeApiServer, type KubeObject } from '../helpers/kube-apiserver.js';

const svc = (name: string, ip: string, ns = 'default'): KubeObject => ({ metadata: { name, namespace: ns }, spec: { type: 'ClusterIP', clusterIP: ip, clusterIPs: [ip], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] } });

const until = async (what: string, ok: () => boolean, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('test list/watch server with the real client', () => {
  let dir: string;
  let api: KubeApiServer;
  let kc: KubeConfig;
  const stops: Array<() => unknown> = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-kapi-'));
    api = await KubeApiServer.start();
    kc = new KubeConfig();
    kc.loadFromFile(api.writeKubeconfig(join(dir, 'kubeconfig')));
  });
  afterEach(async () => {
    for (const s of stops.splice(0)) await s();
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists with a resourceVersion, paged with limit and continue, and answers 401 without the token', async () => {
    for (let i = 0; i < 5; i++) api.apply('services', svc(`s${i}`, `10.96.0.${i + 1}`));
    const core = kc.makeApiClient(CoreV1Api);
    const first = await core.listServiceForAllNamespaces({ limit: 2 });
    expect(first.items.map((s) => s.metadata!.name)).toEqual(['s0', 's1']);
    expect(first.metadata!.resourceVersion).toBe(api.resourceVersion);
    // a change between pages: the pages stay one consistent snapshot
    api.apply('services', svc('s9', '10.96.0.9'));
    const names = first.items.map((s) => s.metadata!.name);
    let cont = first.metadata!._continue;
    while (cont) {
      const page = await core.listServiceForAllNamespaces({ limit: 2, _continue: cont });
      names.push(...page.items.map((s) => s.metadata!.name!));
      cont = page.metadata!._continue;
    }
    expect(names).toEqual(['s0', 's1', 's2', 's3', 's4']);
    // a continue token older than the history: 410, as kube-apiserver answers
    const again = await core.listServiceForAllNamespaces({ limit: 2 });
    api.apply('services', svc('s8', '10.96.0.8'));
    api.compact();
    await expect(core.listServiceForAllNamespaces({ limit: 2, _continue: again.metadata!._continue })).rejects.toMatchObject({ code: 410 });

    const bad = new KubeConfig();
    bad.loadFromFile(api.writeKubeconfig(join(dir, 'bad'), 'not-the-token'));
    await expect(bad.makeApiClient(CoreV1Api).listServiceForAllNamespaces()).rejects.toMatchObject({ code: 401 });
    expect(api.requests).toContain('unauthorized /api/v1/services');
  });

  it('an informer lists, then follows ADDED, MODIFIED and DELETED; slices and the node by field selector too', async () => {
    api.apply('services', svc('web', '10.96.0.10'));
    api.apply('endpointslices', { metadata: { name: 'web-abc', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', endpoints: [{ addresses: ['10.244.1.5'], conditions: { ready: true } }], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] });
    api.apply('nodes', { metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.10' }] } });
    api.apply('nodes', { metadata: { name: 'node-b' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.11' }] } });
    const core = kc.makeApiClient(CoreV1Api);
    const disc = kc.makeApiClient(DiscoveryV1Api);
    const inf = makeInformer<V1Service>(kc, '/api/v1/services', () => core.listServiceForAllNamespaces());
    const events: string[] = [];
    inf.on('add', (o) => events.push(`add ${o.metadata!.name} ${o.spec!.clusterIP}`));
    inf.on('update', (o) => events.push(`update ${o.metadata!.name} ${o.spec!.clusterIP}`));
    inf.on('delete', (o) => events.push(`delete ${o.metadata!.name}`));
    await inf.start();
    stops.push(() => inf.stop());
    const slices = makeInformer(kc, '/apis/discovery.k8s.io/v1/endpointslices', () => disc.listEndpointSliceForAllNamespaces());
    await slices.start();
    stops.push(() => slices.stop());
    const node = new ListWatch('/api/v1/nodes', new Watch(kc), () => core.listNode({ fieldSelector: 'metadata.name=node-a' }), false, undefined, 'metadata.name=node-a');
    await node.start();
    stops.push(() => node.stop());
    expect(events).toEqual(['add web 10.96.0.10']);
    expect(slices.list('default').map((s) => s.metadata!.name)).toEqual(['web-abc']);
    expect(node.list().map((n) => n.metadata!.name)).toEqual(['node-a']);
    await until('the watch', () => api.watches === 3);

    api.apply('services', svc('web', '10.96.0.11'));
    api.apply('services', svc('db', '10.96.0.12', 'prod'));
    api.delete('services', 'web');
    api.apply('nodes', { metadata: { name: 'node-b' }, status: { addresses: [] } });
    await until('three events', () => events.length === 4);
    expect(events).toEqual(['add web 10.96.0.10', 'update web 10.96.0.11', 'add db 10.96.0.12', 'delete web']);
    expect(inf.list().map((s) => `${s.metadata!.namespace}/${s.metadata!.name}`)).toEqual(['prod/db']);
    // the node informer saw nothing of the other node
    expect(node.list().map((n) => n.metadata!.name)).toEqual(['node-a']);
    // one watch of the nodes, from the version its list returned
    expect(api.requests.filter((r) => r.startsWith('watch nodes'))).toEqual(['watch nodes rv=5']);
  });

  it('a watch from a compacted version gets an ERROR event with a 410 Status; the informer relists and sees what changed meanwhile', async () => {
    api.apply('services', svc('a', '10.96.0.1'));
    api.apply('services', svc('b', '10.96.0.2'));
    const core = kc.makeApiClient(CoreV1Api);
    const inf = makeInformer<V1Service>(kc, '/api/v1/services', () => core.listServiceForAllNamespaces());
    const deleted: string[] = [];
    inf.on('delete', (o) => deleted.push(o.metadata!.name!));
    await inf.start();
    stops.push(() => inf.stop());
    await until('the watch', () => api.watches === 1);
    // the watch is cut; meanwhile b goes, c comes and the history is compacted
    api.dropWatches();
    api.delete('services', 'b');
    api.apply('services', svc('c', '10.96.0.3'));
    api.compact();
    // a raw watch from the old version: the ERROR event, as kube-apiserver sends it
    const seen: Array<{ type: string; object: { code?: number; reason?: string; kind?: string } }> = [];
    await new Promise<void>((resolve) => {
      void new Watch(kc).watch('/api/v1/services', { resourceVersion: '2' }, (type, object) => seen.push({ type, object }), () => resolve());
    });
    expect(seen).toEqual([{ type: 'ERROR', object: expect.objectContaining({ kind: 'Status', code: 410, reason: 'Expired' }) }]);
    // the informer's connection was cut: it reports the error and stops (restarting it is the user's job)
    const errors: unknown[] = [];
    inf.on('error', (e) => errors.push(e));
    await inf.start();
    await until('the relist', () => inf.list().length === 2 && deleted.length === 1);
    expect(inf.list().map((s) => s.metadata!.name).sort()).toEqual(['a', 'c']);
    expect(deleted).toEqual(['b']);
    expect(api.requests.filter((r) => r.startsWith('list services')).length).toBeGreaterThanOrEqual(2);
  });

  it('bookmarks reach a watch that asked for them; the server goes away and comes back on the same port', async () => {
    api.apply('services', svc('a', '10.96.0.1'));
    const seen: string[] = [];
    let ended: unknown = 'no';
    const ctl = await new Watch(kc).watch('/api/v1/services', { resourceVersion: api.resourceVersion, allowWatchBookmarks: true }, (type, o: KubeObject) => seen.push(`${type} ${o.metadata.resourceVersion}`), (e) => (ended = e));
    stops.push(() => ctl.abort());
    await until('the watch', () => api.watches === 1);
    api.bookmark();
    api.apply('services', svc('b', '10.96.0.2'));
    await until('two events', () => seen.length === 2);
    expect(seen).toEqual([`BOOKMARK 2`, `ADDED 3`]);
    expect(api.requests).toContain('watch services rv=2 bookmarks');

    const url = api.url;
    await api.stop();
    await until('the watch to end', () => ended !== 'no');
    const core = kc.makeApiClient(CoreV1Api);
    await expect(core.listServiceForAllNamespaces()).rejects.toThrow(/ECONNREFUSED|fetch failed/);
    await api.resume();
    expect(api.url).toBe(url);
    expect((await core.listServiceForAllNamespaces()).items.map((s) => s.metadata!.name)).toEqual(['a', 'b']);
  });
});
