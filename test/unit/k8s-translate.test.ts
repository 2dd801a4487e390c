// SPDX-License-Identifier: Apache-2.0
// Kubernetes Services and EndpointSlices as balancer specs: every rule of the translation, each
// with the objects a real API server would hand the agent, and properties over random inputs.
import type { V1Endpoint, V1EndpointSlice, V1Service, V1ServicePort } from '@kubernetes/client-node';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LB_MAX_BACKENDS_PER_SVC } from '../../src/gen/lb.js';
import { parseIp, type Ip } from '../../src/lb/addr.js';
import { checkService, DEFAULT_AFFINITY_SECONDS, MAX_AFFINITY_SECONDS } from '../../src/lb/model.js';
import { originName, translateService, type K8sServiceSpec, type NodeContext, type Translation } from '../../src/k8s/translate.js';

const ip = (s: string): Ip => parseIp(s)!;
const NODE: NodeContext = { nodeName: 'node-a', nodeAddresses: [ip('192.168.56.11'), ip('fd56::11')] };

type SvcSpec = NonNullable<V1Service['spec']>;

function svc(spec: Partial<SvcSpec> = {}, extra: Partial<V1Service> = {}): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'shop', name: 'web' },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }], ...spec },
    ...extra,
  };
}

interface EpOpts {
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  node?: string;
  zones?: string[];
  nodes?: string[];
}
function ep(addr: string, o: EpOpts = {}): V1Endpoint {
  const conditions: V1Endpoint['conditions'] = {};
  if (o.ready !== undefined) conditions.ready = o.ready;
  if (o.serving !== undefined) conditions.serving = o.serving;
  if (o.terminating !== undefined) conditions.terminating = o.terminating;
  return {
    addresses: [addr],
    conditions,
    nodeName: o.node ?? 'node-b',
    ...(o.zones || o.nodes ? { hints: { ...(o.zones ? { forZones: o.zones.map((name) => ({ name })) } : {}), ...(o.nodes ? { forNodes: o.nodes.map((name) => ({ name })) } : {}) } } : {}),
  };
}

function slice(name: string, endpoints: V1Endpoint[], ports: V1EndpointSlice['ports'] = [{ name: 'http', port: 8080, protocol: 'TCP' }], addressType = 'IPv4'): V1EndpointSlice {
  return { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { namespace: 'shop', name, labels: { 'kubernetes.io/service-name': 'web' } }, addressType, endpoints, ports };
}

/** `VIP:PORT/PROTO -> backend[,draining] ...`: what a user would read in `lb list`. */
const view = (t: Translation): Record<string, string[]> =>
  Object.fromEntries(t.specs.map((s) => [s.name, s.backends.map((b) => (b.state === 'active' ? b.name : `${b.name},draining`))]));

const only = (t: Translation): K8sServiceSpec => {
  expect(t.specs).toHaveLength(1);
  return t.specs[0];
};

describe('k8s translate: Service kinds', () => {
  it('a ClusterIP service with one ready endpoint is one spec with one active backend', () => {
    const t = translateService(svc(), [slice('web-1', [ep('10.244.1.5')])], NODE);
    expect(t.skipped).toBeUndefined();
    expect(t.refused).toEqual([]);
    expect(view(t)).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080'] });
    const s = only(t);
    expect(s).toMatchObject({ proto: 'tcp', port: 80, affinity: 0, vipKind: 'clusterIP', trafficPolicy: 'Cluster', origin: { namespace: 'shop', service: 'web', portName: 'http', port: 80 } });
    expect(s.ip.text).toBe('10.96.0.10');
    expect(s.backends[0]).toMatchObject({ port: 8080, weight: 1, state: 'active' });
    // the balancer's own validation accepts it as is
    expect(() => checkService(s)).not.toThrow();
  });

  it('a Service without type is ClusterIP', () => {
    const t = translateService(svc({ type: undefined }), [slice('web-1', [ep('10.244.1.5')])], NODE);
    expect(Object.keys(view(t))).toEqual(['10.96.0.10:80/tcp']);
  });

  it('every port, TCP and UDP, in the order the Service lists them', () => {
    const ports: V1ServicePort[] = [
      { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
      { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 5353 },
      { name: 'metrics', port: 9153, targetPort: 9153 },
    ];
    const s = slice('dns-1', [ep('10.244.1.7')], [
      { name: 'dns', port: 5353, protocol: 'UDP' },
      { name: 'dns-tcp', port: 5353, protocol: 'TCP' },
      { name: 'metrics', port: 9153 },
    ]);
    const t = translateService(svc({ ports }), [s], NODE);
    expect(view(t)).toEqual({ '10.96.0.10:53/udp': ['10.244.1.7:5353'], '10.96.0.10:53/tcp': ['10.244.1.7:5353'], '10.96.0.10:9153/tcp': ['10.244.1.7:9153'] });
    expect(t.specs.map((x) => x.name)).toEqual(['10.96.0.10:53/udp', '10.96.0.10:53/tcp', '10.96.0.10:9153/tcp']);
  });

  it('SCTP is refused with a reason, the other ports still work', () => {
    const ports: V1ServicePort[] = [
      { name: 'sig', port: 3868, protocol: 'SCTP' },
      { name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 },
    ];
    const t = translateService(svc({ ports }), [slice('web-1', [ep('10.244.1.5')], [{ name: 'sig', port: 3868, protocol: 'SCTP' }, { name: 'http', port: 8080 }])], NODE);
    expect(t.refused).toEqual([{ port: 'shop/web:sig', reason: expect.stringContaining('SCTP') }]);
    expect(Object.keys(view(t))).toEqual(['10.96.0.10:80/tcp']);
  });

  it('headless and ExternalName services are skipped with the reason, without error', () => {
    const headless = translateService(svc({ clusterIP: 'None', clusterIPs: ['None'] }), [slice('web-1', [ep('10.244.1.5')])], NODE);
    expect(headless).toEqual({ specs: [], skipped: expect.stringContaining('headless'), refused: [], truncated: [] });
    const ext = translateService(svc({ type: 'ExternalName', externalName: 'db.example.com', clusterIP: undefined, clusterIPs: undefined }), [], NODE);
    expect(ext.specs).toEqual([]);
    expect(ext.skipped).toContain('ExternalName');
    expect(ext.skipped).toContain('db.example.com');
  });

  it('a service without a cluster IP yet, or without ports, is skipped', () => {
    expect(translateService(svc({ clusterIP: undefined, clusterIPs: undefined }), [], NODE).skipped).toContain('no cluster IP');
    expect(translateService(svc({ clusterIP: '', clusterIPs: [] }), [], NODE).skipped).toContain('no cluster IP');
    expect(translateService(svc({ ports: [] }), [], NODE).skipped).toContain('no ports');
  });

  it('a cluster IP that is not an address is refused, not thrown', () => {
    const t = translateService(svc({ clusterIP: 'ten', clusterIPs: ['ten'] }), [], NODE);
    expect(t.specs).toEqual([]);
    expect(t.refused[0]).toEqual({ port: 'shop/web:http', reason: expect.stringContaining('ten') });
  });

  it('clusterIP alone (no clusterIPs) is used', () => {
    const t = translateService(svc({ clusterIPs: undefined }), [slice('web-1', [ep('10.244.1.5')])], NODE);
    expect(Object.keys(view(t))).toEqual(['10.96.0.10:80/tcp']);
  });
});

describe('k8s translate: dual-stack', () => {
  it('each family of clusterIPs gets the endpoints of its own family only', () => {
    const v4 = slice('web-v4', [ep('10.244.1.5'), ep('10.244.2.5')]);
    const v6 = slice('web-v6', [ep('fd00:10:244::5')], undefined, 'IPv6');
    const t = translateService(svc({ clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', 'FD00:10:96::A'], ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'RequireDualStack' }), [v6, v4], NODE);
    expect(view(t)).toEqual({
      '10.96.0.10:80/tcp': ['10.244.1.5:8080', '10.244.2.5:8080'],
      '[fd00:10:96::a]:80/tcp': ['[fd00:10:244::5]:8080'],
    });
    for (const s of t.specs) expect(() => checkService(s)).not.toThrow();
  });

  it('an IPv6-only service ignores IPv4 slices, and FQDN slices are ignored everywhere', () => {
    const t = translateService(svc({ clusterIP: 'fd00:10:96::a', clusterIPs: ['fd00:10:96::a'] }), [slice('v4', [ep('10.244.1.5')]), slice('fq', [ep('db.example.com')], undefined, 'FQDN'), slice('v6', [ep('fd00::5')], undefined, 'IPv6')], NODE);
    expect(view(t)).toEqual({ '[fd00:10:96::a]:80/tcp': ['[fd00::5]:8080'] });
  });

  it('an endpoint whose address is not of its slice family is left out', () => {
    const t = translateService(svc(), [slice('web-1', [ep('fd00::5'), ep('10.244.1.5'), ep('garbage')])], NODE);
    expect(view(t)).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080'] });
  });

  it('uses the first address of an endpoint (the API says the rest are the same pod)', () => {
    const e = ep('10.244.1.5');
    e.addresses.push('10.244.1.6');
    expect(view(translateService(svc(), [slice('web-1', [e])], NODE))).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080'] });
  });
});

describe('k8s translate: target ports', () => {
  it('a named targetPort is resolved per slice: pods of two slices listen on different numbers', () => {
    const ports: V1ServicePort[] = [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'web' }];
    const a = slice('web-a', [ep('10.244.1.5')], [{ name: 'http', port: 8080, protocol: 'TCP' }]);
    const b = slice('web-b', [ep('10.244.2.5')], [{ name: 'http', port: 9090, protocol: 'TCP' }]);
    expect(view(translateService(svc({ ports }), [a, b], NODE))).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080', '10.244.2.5:9090'] });
  });

  it('slice ports are matched by the Service port name and protocol', () => {
    const ports: V1ServicePort[] = [
      { name: 'a', port: 80, protocol: 'TCP', targetPort: 'x' },
      { name: 'b', port: 81, protocol: 'UDP', targetPort: 'y' },
    ];
    const s = slice('web-1', [ep('10.244.1.5')], [
      { name: 'b', port: 7001, protocol: 'UDP' },
      { name: 'a', port: 7000, protocol: 'TCP' },
      { name: 'b', port: 7002, protocol: 'TCP' },
    ]);
    expect(view(translateService(svc({ ports }), [s], NODE))).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:7000'], '10.96.0.10:81/udp': ['10.244.1.5:7001'] });
  });

  it('an unnamed port matches the unnamed slice port; originName uses its number', () => {
    const ports: V1ServicePort[] = [{ port: 80, targetPort: 8080 }];
    const t = translateService(svc({ ports }), [slice('web-1', [ep('10.244.1.5')], [{ port: 8080 }])], NODE);
    expect(view(t)).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080'] });
    expect(only(t).origin).toEqual({ namespace: 'shop', service: 'web', portName: '', port: 80 });
    expect(originName(only(t).origin)).toBe('shop/web:80');
    expect(originName({ namespace: 'kube-system', service: 'kube-dns', portName: 'dns-tcp', port: 53 })).toBe('kube-system/kube-dns:dns-tcp');
  });

  it('a slice port without a number ("all ports") takes a numeric targetPort as is, or the port when targetPort is unset', () => {
    const s = slice('web-1', [ep('10.244.1.5')], [{ name: 'http', protocol: 'TCP' }]);
    expect(view(translateService(svc(), [s], NODE))).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080'] });
    expect(view(translateService(svc({ ports: [{ name: 'http', port: 80 }] }), [s], NODE))).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:80'] });
    // a named targetPort cannot be resolved without the slice's number: no backend from that slice
    expect(view(translateService(svc({ ports: [{ name: 'http', port: 80, targetPort: 'web' }] }), [s], NODE))).toEqual({ '10.96.0.10:80/tcp': [] });
  });

  it('a slice without the port contributes nothing to it', () => {
    const t = translateService(svc(), [slice('web-1', [ep('10.244.1.5')], [{ name: 'metrics', port: 9100 }]), slice('web-2', [ep('10.244.1.6')], [])], NODE);
    expect(view(t)).toEqual({ '10.96.0.10:80/tcp': [] });
  });
});

describe('k8s translate: endpoint conditions', () => {
  it('ready endpoints are active; nil conditions mean ready (API)', () => {
    const e = ep('10.244.1.9');
    delete e.conditions;
    const t = translateService(svc(), [slice('web-1', [ep('10.244.1.5', { ready: true }), ep('10.244.1.6'), e])], NODE);
    expect(view(t)).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080', '10.244.1.6:8080', '10.244.1.9:8080'] });
  });

  it('not ready, not terminating endpoints are left out', () => {
    const t = translateService(svc(), [slice('web-1', [ep('10.244.1.5'), ep('10.244.1.6', { ready: false, serving: false })])], NODE);
    expect(view(t)).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080'] });
  });

  it('a terminating endpoint beside ready ones is draining: no new connections, established ones finish', () => {
    const t = translateService(svc(), [slice('web-1', [ep('10.244.1.5'), ep('10.244.1.6', { ready: false, serving: true, terminating: true })])], NODE);
    expect(view(t)).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080', '10.244.1.6:8080,draining'] });
  });

  it('no ready endpoint: the serving and terminating ones are used (kube-proxy fallback), the others drain', () => {
    const t = translateService(
      svc(),
      [slice('web-1', [ep('10.244.1.5', { ready: false, serving: true, terminating: true }), ep('10.244.1.6', { ready: false, serving: false, terminating: true }), ep('10.244.1.7', { ready: false, serving: false })])],
      NODE,
    );
    expect(view(t)).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080', '10.244.1.6:8080,draining'] });
  });

  it('nil serving means serving (API): a terminating endpoint without it is a fallback candidate', () => {
    const t = translateService(svc(), [slice('web-1', [ep('10.244.1.5', { ready: false, terminating: true })])], NODE);
    expect(view(t)).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080'] });
  });

  it('no usable endpoint at all: a spec with no active backend (connects are refused)', () => {
    expect(view(translateService(svc(), [], NODE))).toEqual({ '10.96.0.10:80/tcp': [] });
    expect(view(translateService(svc(), [slice('web-1', [ep('10.244.1.5', { ready: false, serving: false, terminating: true })])], NODE))).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080,draining'] });
  });

  it('an endpoint listed in two slices is one backend, with the better of its conditions', () => {
    const a = slice('web-a', [ep('10.244.1.5', { ready: false, serving: true, terminating: true }), ep('10.244.1.6')]);
    const b = slice('web-b', [ep('10.244.1.5'), ep('10.244.1.6')]);
    const want = { '10.96.0.10:80/tcp': ['10.244.1.5:8080', '10.244.1.6:8080'] };
    expect(view(translateService(svc(), [a, b], NODE))).toEqual(want);
    expect(view(translateService(svc(), [b, a], NODE))).toEqual(want);
  });

  it('the same address on two different target ports is two backends', () => {
    const a = slice('web-a', [ep('10.244.1.5')], [{ name: 'http', port: 8080 }]);
    const b = slice('web-b', [ep('10.244.1.5')], [{ name: 'http', port: 8081 }]);
    expect(view(translateService(svc(), [a, b], NODE))).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080', '10.244.1.5:8081'] });
  });

  it('backends are in address order whatever the order of slices and endpoints', () => {
    const t = translateService(svc(), [slice('z', [ep('10.244.2.1'), ep('10.244.1.10')]), slice('a', [ep('10.244.1.9')])], NODE);
    expect(view(t)).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.9:8080', '10.244.1.10:8080', '10.244.2.1:8080'] });
  });
});

describe('k8s translate: session affinity', () => {
  it('ClientIP with its timeoutSeconds; default 10800; None is 0', () => {
    const slices = [slice('web-1', [ep('10.244.1.5')])];
    expect(only(translateService(svc({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }), slices, NODE)).affinity).toBe(60);
    expect(only(translateService(svc({ sessionAffinity: 'ClientIP' }), slices, NODE)).affinity).toBe(DEFAULT_AFFINITY_SECONDS);
    expect(only(translateService(svc({ sessionAffinity: 'None', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }), slices, NODE)).affinity).toBe(0);
  });

  it('a timeout beyond what the API allows is held to the cap', () => {
    const s = only(translateService(svc({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 10 ** 9 } } }), [], NODE));
    expect(s.affinity).toBe(MAX_AFFINITY_SECONDS);
    expect(only(translateService(svc({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } }), [], NODE)).affinity).toBe(1);
  });

  it('every VIP of the service carries the affinity', () => {
    const t = translateService(svc({ type: 'NodePort', sessionAffinity: 'ClientIP', externalIPs: ['203.0.113.7'], ports: [{ name: 'http', port: 80, nodePort: 30080, targetPort: 8080 }] }), [], NODE);
    expect(t.specs.length).toBe(3);
    for (const s of t.specs) expect(s.affinity).toBe(DEFAULT_AFFINITY_SECONDS);
  });
});

describe('k8s translate: external IPs, load balancers, node ports', () => {
  const slices = [slice('web-1', [ep('10.244.1.5'), ep('10.244.2.5', { node: 'node-a' })])];

  it('externalIPs and load-balancer ingress IPs are further VIPs of the same backends', () => {
    const t = translateService(
      svc({ type: 'LoadBalancer', externalIPs: ['203.0.113.7'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }, { status: { loadBalancer: { ingress: [{ ip: '198.51.100.9' }, { hostname: 'lb.example.com' }] } } }),
      slices,
      { ...NODE, nodeAddresses: [ip('192.168.56.11')] },
    );
    const both = ['10.244.1.5:8080', '10.244.2.5:8080'];
    expect(view(t)).toEqual({ '10.96.0.10:80/tcp': both, '203.0.113.7:80/tcp': both, '198.51.100.9:80/tcp': both, '192.168.56.11:30080/tcp': both });
    expect(t.specs.map((s) => s.vipKind)).toEqual(['clusterIP', 'externalIP', 'loadBalancer', 'nodePort']);
  });

  it('ingress IPs of a Service that is not type LoadBalancer, or in Proxy mode, are not VIPs', () => {
    const status = { loadBalancer: { ingress: [{ ip: '198.51.100.9' }] } };
    expect(Object.keys(view(translateService(svc({}, { status }), slices, NODE)))).toEqual(['10.96.0.10:80/tcp']);
    const proxy = { loadBalancer: { ingress: [{ ip: '198.51.100.9', ipMode: 'Proxy' }, { ip: '198.51.100.10', ipMode: 'VIP' }] } };
    expect(Object.keys(view(translateService(svc({ type: 'LoadBalancer' }), slices, NODE)))).toEqual(['10.96.0.10:80/tcp']);
    expect(Object.keys(view(translateService(svc({ type: 'LoadBalancer' }, { status: proxy }), slices, NODE)))).toEqual(['10.96.0.10:80/tcp', '198.51.100.10:80/tcp']);
  });

  it('NodePort: each node address with the nodePort, IPv6 addresses getting IPv6 endpoints', () => {
    const v6 = slice('web-v6', [ep('fd00::5')], undefined, 'IPv6');
    const t = translateService(svc({ type: 'NodePort', clusterIPs: ['10.96.0.10', 'fd00:96::a'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }), [...slices, v6], NODE);
    expect(view(t)).toEqual({
      '10.96.0.10:80/tcp': ['10.244.1.5:8080', '10.244.2.5:8080'],
      '[fd00:96::a]:80/tcp': ['[fd00::5]:8080'],
      '192.168.56.11:30080/tcp': ['10.244.1.5:8080', '10.244.2.5:8080'],
      '[fd56::11]:30080/tcp': ['[fd00::5]:8080'],
    });
  });

  it('a single-stack Service takes no VIP of the other family: node, external and ingress addresses', () => {
    const t = translateService(
      svc({ type: 'LoadBalancer', externalIPs: ['203.0.113.7', '2001:db8::7'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }, { status: { loadBalancer: { ingress: [{ ip: '198.51.100.9' }, { ip: '2001:db8::9' }] } } }),
      slices,
      NODE,
    );
    expect(Object.keys(view(t))).toEqual(['10.96.0.10:80/tcp', '203.0.113.7:80/tcp', '198.51.100.9:80/tcp', '192.168.56.11:30080/tcp']);
    const v6 = translateService(svc({ type: 'NodePort', clusterIP: 'fd00:96::a', clusterIPs: ['fd00:96::a'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }), [], NODE);
    expect(Object.keys(view(v6))).toEqual(['[fd00:96::a]:80/tcp', '[fd56::11]:30080/tcp']);
  });

  it('a ClusterIP service has no node port even if one is written; a LoadBalancer without node ports has none', () => {
    expect(Object.keys(view(translateService(svc({ ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }), slices, NODE)))).toEqual(['10.96.0.10:80/tcp']);
    expect(Object.keys(view(translateService(svc({ type: 'LoadBalancer', allocateLoadBalancerNodePorts: false }), slices, NODE)))).toEqual(['10.96.0.10:80/tcp']);
  });

  it('a VIP named twice (external IP equal to the ingress IP) is one spec, the first kind', () => {
    const t = translateService(svc({ type: 'LoadBalancer', externalIPs: ['198.51.100.9', '198.51.100.9'] }, { status: { loadBalancer: { ingress: [{ ip: '198.51.100.9' }] } } }), slices, NODE);
    expect(t.specs.map((s) => [s.name, s.vipKind])).toEqual([
      ['10.96.0.10:80/tcp', 'clusterIP'],
      ['198.51.100.9:80/tcp', 'externalIP'],
    ]);
  });

  it('an external IP that is not an address is named in refused; the rest is programmed', () => {
    const t = translateService(svc({ externalIPs: ['not-an-ip', '203.0.113.7'] }), slices, NODE);
    expect(Object.keys(view(t))).toEqual(['10.96.0.10:80/tcp', '203.0.113.7:80/tcp']);
    expect(t.refused).toEqual([{ port: 'shop/web:http', reason: expect.stringContaining('not-an-ip') }]);
  });
});

describe('k8s translate: traffic policies', () => {
  const slices = [slice('web-1', [ep('10.244.1.5', { node: 'node-b' }), ep('10.244.1.6', { node: 'node-a' }), ep('10.244.1.7', { node: 'node-a', ready: false, serving: true, terminating: true })])];

  it('internalTrafficPolicy: Local keeps only endpoints of this node on the cluster IP', () => {
    const t = translateService(svc({ internalTrafficPolicy: 'Local' }), slices, NODE);
    expect(view(t)).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.6:8080', '10.244.1.7:8080,draining'] });
    expect(only(t).trafficPolicy).toBe('Local');
  });

  it('internalTrafficPolicy: Local without a local endpoint refuses, it does not fall back to other nodes', () => {
    expect(view(translateService(svc({ internalTrafficPolicy: 'Local' }), slices, { ...NODE, nodeName: 'node-c' }))).toEqual({ '10.96.0.10:80/tcp': [] });
  });

  it('internalTrafficPolicy: Local falls back to local serving+terminating endpoints', () => {
    const s = [slice('web-1', [ep('10.244.1.5', { node: 'node-b' }), ep('10.244.1.7', { node: 'node-a', ready: false, serving: true, terminating: true })])];
    expect(view(translateService(svc({ internalTrafficPolicy: 'Local' }), s, NODE))).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.7:8080'] });
  });

  it('internalTrafficPolicy: Local does not touch the external VIPs, externalTrafficPolicy does not touch the cluster IP', () => {
    const t = translateService(svc({ type: 'NodePort', internalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }), slices, { ...NODE, nodeAddresses: [ip('192.168.56.11')] });
    expect(view(t)).toEqual({
      '10.96.0.10:80/tcp': ['10.244.1.6:8080', '10.244.1.7:8080,draining'],
      '192.168.56.11:30080/tcp': ['10.244.1.5:8080', '10.244.1.6:8080', '10.244.1.7:8080,draining'],
    });
    const u = translateService(svc({ type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }), slices, { ...NODE, nodeAddresses: [ip('192.168.56.11')] });
    expect(u.specs[0]).toMatchObject({ vipKind: 'clusterIP', trafficPolicy: 'Cluster' });
    expect(u.specs[0].localBackends).toBeUndefined();
  });

  it('externalTrafficPolicy: Local: sockets of this node reach every endpoint (as kube-proxy does), traffic from outside only the local ones', () => {
    const t = translateService(
      svc({ type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 32000, externalIPs: ['203.0.113.7'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }, { status: { loadBalancer: { ingress: [{ ip: '198.51.100.9' }] } } }),
      slices,
      { ...NODE, nodeAddresses: [ip('192.168.56.11')] },
    );
    const ext = t.specs.filter((s) => s.vipKind !== 'clusterIP');
    expect(ext.map((s) => s.vipKind)).toEqual(['externalIP', 'loadBalancer', 'nodePort']);
    for (const s of ext) {
      expect(s.trafficPolicy).toBe('Local');
      expect(s.backends.map((b) => b.name)).toEqual(['10.244.1.5:8080', '10.244.1.6:8080', '10.244.1.7:8080']);
      expect(s.localBackends!.map((b) => `${b.name}:${b.state}`)).toEqual(['10.244.1.6:8080:active', '10.244.1.7:8080:draining']);
    }
    expect(t.healthCheck).toEqual({ nodePort: 32000, localEndpoints: 1 });
    expect(translateService(svc({ type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 32000 }), slices, { ...NODE, nodeName: 'node-c' }).healthCheck).toEqual({ nodePort: 32000, localEndpoints: 0 });
  });

  it('externalTrafficPolicy: Cluster has no local list and no health check', () => {
    const t = translateService(svc({ type: 'LoadBalancer', externalTrafficPolicy: 'Cluster', healthCheckNodePort: 32000, ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }), slices, NODE);
    expect(t.specs.every((s) => s.localBackends === undefined && s.trafficPolicy === 'Cluster')).toBe(true);
    expect(t.healthCheck).toBeUndefined();
  });

  it('an endpoint without nodeName is never local', () => {
    const e = ep('10.244.1.8');
    delete e.nodeName;
    expect(view(translateService(svc({ internalTrafficPolicy: 'Local' }), [slice('web-1', [e])], NODE))).toEqual({ '10.96.0.10:80/tcp': [] });
  });
});

describe('k8s translate: topology hints', () => {
  const zoned = (zone: string): NodeContext => ({ ...NODE, zone });

  it('zone hints are used when every ready endpoint has one and some are for this zone', () => {
    const s = [slice('web-1', [ep('10.244.1.5', { zones: ['z1'] }), ep('10.244.1.6', { zones: ['z2'] }), ep('10.244.1.7', { zones: ['z1', 'z2'] })])];
    expect(view(translateService(svc(), s, zoned('z1')))).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.5:8080', '10.244.1.7:8080'] });
    expect(view(translateService(svc(), s, zoned('z2')))).toEqual({ '10.96.0.10:80/tcp': ['10.244.1.6:8080', '10.244.1.7:8080'] });
  });

  it('zone hints are ignored when one ready endpoint lacks them, none is for this zone, or the zone is unknown', () => {
    const all = ['10.244.1.5:8080', '10.244.1.6:8080'];
    expect(view(translateService(svc(), [slice('web-1', [ep('10.244.1.5', { zones: ['z1'] }), ep('10.244.1.6')])], zoned('z1')))['10.96.0.10:80/tcp']).toEqual(all);
    const s = [slice('web-1', [ep('10.244.1.5', { zones: ['z1'] }), ep('10.244.1.6', { zones: ['z2'] })])];
    expect(view(translateService(svc(), s, zoned('z3')))['10.96.0.10:80/tcp']).toEqual(all);
    expect(view(translateService(svc(), s, NODE))['10.96.0.10:80/tcp']).toEqual(all);
    // a not-ready endpoint without hints does not switch them off
    const n = [slice('web-1', [ep('10.244.1.5', { zones: ['z1'] }), ep('10.244.1.6', { zones: ['z2'] }), ep('10.244.1.9', { ready: false, serving: false })])];
    expect(view(translateService(svc(), n, zoned('z1')))['10.96.0.10:80/tcp']).toEqual(['10.244.1.5:8080']);
  });

  it('node hints (PreferSameNode) come before zone hints', () => {
    const s = [slice('web-1', [ep('10.244.1.5', { zones: ['z1'], nodes: ['node-b'] }), ep('10.244.1.6', { zones: ['z1'], nodes: ['node-a'] })])];
    expect(view(translateService(svc(), s, zoned('z1')))['10.96.0.10:80/tcp']).toEqual(['10.244.1.6:8080']);
  });

  it('hints are not applied under a Local traffic policy', () => {
    const s = [slice('web-1', [ep('10.244.1.5', { zones: ['z2'], node: 'node-a' }), ep('10.244.1.6', { zones: ['z1'], node: 'node-a' })])];
    expect(view(translateService(svc({ internalTrafficPolicy: 'Local' }), s, zoned('z1')))['10.96.0.10:80/tcp']).toEqual(['10.244.1.5:8080', '10.244.1.6:8080']);
  });
});

describe('k8s translate: limits', () => {
  const many = (n: number, o: EpOpts = {}): V1Endpoint[] => Array.from({ length: n }, (_, i) => ep(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, o));

  it(`more than ${LB_MAX_BACKENDS_PER_SVC} endpoints: truncated to the limit, with a reason`, () => {
    const n = LB_MAX_BACKENDS_PER_SVC + 76;
    const slices = Array.from({ length: 11 }, (_, k) => slice(`web-${k}`, many(n).slice(k * 100, (k + 1) * 100)));
    const t = translateService(svc(), slices, NODE);
    expect(only(t).backends).toHaveLength(LB_MAX_BACKENDS_PER_SVC);
    expect(t.truncated).toEqual([{ port: 'shop/web:http', reason: expect.stringMatching(new RegExp(`has ${n} endpoints.*at most ${LB_MAX_BACKENDS_PER_SVC}.*76 left out`)) }]);
    expect(t.refused).toEqual([]);
    expect(() => checkService(only(t))).not.toThrow();
  });

  it('truncation keeps the active backends before the draining ones', () => {
    const drain = many(LB_MAX_BACKENDS_PER_SVC, { ready: false, serving: true, terminating: true }).map((e) => ({ ...e, addresses: [e.addresses[0].replace(/^10\./, '10.1')] }));
    const t = translateService(svc(), [slice('web-d', drain), slice('web-a', [ep('10.200.0.1'), ep('10.200.0.2')])], NODE);
    const b = only(t).backends;
    expect(b).toHaveLength(LB_MAX_BACKENDS_PER_SVC);
    expect(b.slice(0, 2).map((x) => `${x.name}:${x.state}`)).toEqual(['10.200.0.1:8080:active', '10.200.0.2:8080:active']);
    expect(b.slice(2).every((x) => x.state === 'draining')).toBe(true);
    expect(t.truncated).toHaveLength(1);
  });

  it(`exactly ${LB_MAX_BACKENDS_PER_SVC} endpoints is not truncated`, () => {
    const t = translateService(svc(), [slice('web-1', many(LB_MAX_BACKENDS_PER_SVC))], NODE);
    expect(only(t).backends).toHaveLength(LB_MAX_BACKENDS_PER_SVC);
    expect(t.truncated).toEqual([]);
  });
});

describe('k8s translate: properties', () => {
  const octet = fc.integer({ min: 1, max: 254 });
  const arbEp = fc.record({
    last: octet,
    ready: fc.option(fc.boolean(), { nil: undefined }),
    serving: fc.option(fc.boolean(), { nil: undefined }),
    terminating: fc.option(fc.boolean(), { nil: undefined }),
    node: fc.constantFrom('node-a', 'node-b'),
  });
  const arbSlices = fc.array(fc.record({ port: fc.constantFrom(8080, 8081), eps: fc.array(arbEp, { maxLength: 8 }) }), { maxLength: 4 });
  const arbSvc = fc.record({
    itp: fc.constantFrom('Cluster', 'Local'),
    etp: fc.constantFrom('Cluster', 'Local'),
    type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer'),
    affinity: fc.boolean(),
  });
  const build = (s: { itp: string; etp: string; type: string; affinity: boolean }, sl: { port: number; eps: { last: number; ready?: boolean; serving?: boolean; terminating?: boolean; node: string }[] }[]): [V1Service, V1EndpointSlice[]] => [
    svc({ type: s.type, internalTrafficPolicy: s.itp, externalTrafficPolicy: s.etp, sessionAffinity: s.affinity ? 'ClientIP' : 'None', externalIPs: ['203.0.113.7'], ports: [{ name: 'http', port: 80, targetPort: 'web', nodePort: 30080 }] }),
    sl.map((x, i) => slice(`web-${i}`, x.eps.map((e) => ep(`10.244.0.${e.last}`, e)), [{ name: 'http', port: x.port }])),
  ];

  it('every spec passes the balancer validation; the input is unchanged; slice order does not change the output', () => {
    fc.assert(
      fc.property(arbSvc, arbSlices, (s, sl) => {
        const [service, slices] = build(s, sl);
        const before = structuredClone([service, slices]);
        const t = translateService(service, slices, NODE);
        // the informer's cached objects are the input: never changed
        expect([service, slices]).toEqual(before);
        for (const spec of t.specs) {
          // the translation does not call checkService itself: every output must pass it
          expect(() => checkService(spec)).not.toThrow();
          if (spec.localBackends) expect(() => checkService({ ...spec, backends: spec.localBackends })).not.toThrow();
          // active backends first, each list sorted within its state
          const states = spec.backends.map((b) => b.state);
          expect(states).toEqual([...states].sort());
        }
        expect(translateService(service, [...slices].reverse(), NODE)).toEqual(t);
      }),
      { numRuns: 300 },
    );
  });

  it('an active backend is a ready endpoint, or a serving+terminating one when none is ready; a draining one is terminating', () => {
    fc.assert(
      fc.property(arbSvc, arbSlices, (s, sl) => {
        const [service, slices] = build(s, sl);
        const t = translateService(service, slices, NODE);
        const cond = new Map<string, { ready: boolean; serving: boolean; terminating: boolean; node: string }[]>();
        sl.forEach((x) => x.eps.forEach((e) => {
          const k = `10.244.0.${e.last}:${x.port}`;
          cond.set(k, [...(cond.get(k) ?? []), { ready: e.ready ?? true, serving: e.serving ?? true, terminating: e.terminating ?? false, node: e.node }]);
        }));
        for (const spec of t.specs) {
          const anyReady = spec.backends.some((b) => b.state === 'active' && cond.get(b.name)!.some((c) => c.ready));
          for (const b of spec.backends) {
            const cs = cond.get(b.name)!;
            if (b.state === 'active') expect(cs.some((c) => c.ready) || (!anyReady && cs.some((c) => c.serving && c.terminating))).toBe(true);
            else expect(cs.some((c) => c.terminating)).toBe(true);
            if (spec.vipKind === 'clusterIP' && spec.trafficPolicy === 'Local') expect(cs.some((c) => c.node === 'node-a')).toBe(true);
          }
          for (const b of spec.localBackends ?? []) expect(cond.get(b.name)!.some((c) => c.node === 'node-a')).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });
});
