// SPDX-License-Identifier: Apache-2.0
// A Kubernetes Service and its EndpointSlices, as the balancer's service specs: one spec per
// (VIP, port, protocol). Pure: no I/O, no clock, the same input gives the same output in the same
// order, so the sync side can compare a new translation with the last one and rewrite only what moved.
//
// The rules follow the API's documented semantics and kube-proxy's behaviour where the API leaves a
// choice (each named where it is applied). The socket hooks only ever see sockets of this node, so
// every spec here is "traffic that starts on this node"; what traffic from outside the node must get
// (externalTrafficPolicy: Local) is carried beside it in `localBackends` for a packet-level path.
import type { V1Endpoint, V1EndpointSlice, V1Service, V1ServicePort } from '@kubernetes/client-node';
import { LB_MAX_BACKENDS_PER_SVC } from '../gen/lb.js';
import { parseIp, type Family, type Ip } from '../lb/addr.js';
import {
  backendName,
  DEFAULT_AFFINITY_SECONDS,
  MAX_AFFINITY_SECONDS,
  serviceName,
  type BackendSpec,
  type BackendState,
  type Proto,
  type ServiceSpec,
} from '../lb/model.js';

/** What the translation needs to know about the node it runs on. */
export interface NodeContext {
  nodeName: string;
  /** the node's own addresses: each one, with a Service's nodePort, is a VIP for sockets on this node */
  nodeAddresses: Ip[];
  /** the node's `topology.kubernetes.io/zone` label; without it zone hints are not used */
  zone?: string;
}

export interface K8sOrigin {
  namespace: string;
  service: string;
  /** the Service port's name; '' when the port is unnamed (only a Service with one port may leave it so) */
  portName: string;
  /** the Service port's number (`spec.ports[].port`), which names an unnamed port */
  port: number;
}

/** Where a VIP comes from in the Service. */
export type VipKind = 'clusterIP' | 'externalIP' | 'loadBalancer' | 'nodePort';
export const VIP_KINDS: readonly VipKind[] = ['clusterIP', 'externalIP', 'loadBalancer', 'nodePort'];

export type TrafficPolicy = 'Cluster' | 'Local';

export interface K8sServiceSpec extends ServiceSpec {
  origin: K8sOrigin;
  vipKind: VipKind;
  /** the traffic policy that governs this VIP: internalTrafficPolicy for clusterIP, externalTrafficPolicy for the rest */
  trafficPolicy: TrafficPolicy;
  /**
   * Only for an external VIP (externalIP, loadBalancer, nodePort) under externalTrafficPolicy: Local:
   * the endpoints on this node, which is what traffic arriving from outside the node may use.
   * `backends` holds every endpoint of the cluster, as kube-proxy gives traffic that starts on the
   * node itself (its pods and the host) for these VIPs, so that a pod on a node without a local
   * endpoint still reaches the Service.
   */
  localBackends?: BackendSpec[];
}

export interface Problem {
  /** `namespace/name:port` (originName) of the port the problem is about */
  port: string;
  reason: string;
}

export interface Translation {
  /** one per VIP, port and protocol; specs of one translation share BackendSpec objects: read them, do not change them */
  specs: K8sServiceSpec[];
  /** why the whole Service is not balanced (headless, ExternalName, no cluster IP yet): not an error */
  skipped?: string;
  /** ports not programmed at all (SCTP, an unknown protocol, an address that does not parse) */
  refused: Problem[];
  /** ports programmed, but not as fully as the API asks (too many endpoints: truncated) */
  truncated: Problem[];
  /** for externalTrafficPolicy: Local on a LoadBalancer Service: the port kube-proxy's health check answers on, and what it would say */
  healthCheck?: { nodePort: number; localEndpoints: number };
}

/** `namespace/name:port`: the port's name, or its number when unnamed. */
export const originName = (o: K8sOrigin): string => `${o.namespace}/${o.service}:${o.portName === '' ? String(o.port) : o.portName}`;

/** The label that ties an EndpointSlice to its Service (the caller selects slices by it). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

const PROTOS: Readonly<Record<string, Proto>> = { TCP: 'tcp', UDP: 'udp' };

/** An endpoint reduced to what the rules look at. */
interface Ep {
  ip: Ip;
  port: number;
  /** `IP:PORT`, the backend's name (made once: one endpoint may back several VIPs) */
  name: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  local: boolean;
  /** hints.forZones names; undefined when the endpoint has none */
  zones?: string[];
  /** hints.forNodes names; undefined when the endpoint has none */
  nodes?: string[];
  /** the backend made of it, by state (shared by the specs of every VIP it backs) */
  as?: Partial<Record<BackendState, BackendSpec>>;
}

/** Higher is better: which copy of an endpoint listed in two slices wins. */
const rank = (e: Ep): number => (e.ready ? 3 : e.serving && e.terminating ? 2 : e.terminating ? 1 : 0);

function skip(reason: string): Translation {
  return { specs: [], skipped: reason, refused: [], truncated: [] };
}

/** Compare 16-byte addresses, then ports: the one order every list here is kept in. */
function byAddress(a: { ip: Ip; port: number }, b: { ip: Ip; port: number }): number {
  const x = a.ip.bytes;
  const y = b.ip.bytes;
  for (let i = 0; i < 16; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return a.port - b.port;
}

const familyOfSlice = (s: V1EndpointSlice): Family | null => (s.addressType === 'IPv4' ? 4 : s.addressType === 'IPv6' ? 6 : null);

/** Addresses parsed once per translation: a pod behind several ports or VIPs is one Ip. */
type IpCache = Map<string, Ip | null>;
function cachedIp(text: string, cache: IpCache): Ip | null {
  let ip = cache.get(text);
  if (ip === undefined) cache.set(text, (ip = parseIp(text)));
  return ip;
}

/**
 * The endpoints serving one Service port, of one address family, merged over every slice and
 * deduplicated by address and port. The slice's own port (matched by the Service port's name and
 * protocol) is the target port: that is how a named targetPort is resolved, per pod. A slice port
 * without a number means "all ports" (API): then a numeric targetPort is used as is.
 */
function endpointsFor(sp: V1ServicePort, proto: string, family: Family, slices: readonly V1EndpointSlice[], node: NodeContext, cache: IpCache): Ep[] {
  const name = sp.name ?? '';
  const numericTarget = typeof sp.targetPort === 'number' ? sp.targetPort : sp.targetPort === undefined ? sp.port : /^\d+$/.test(sp.targetPort) ? Number(sp.targetPort) : undefined;
  const found = new Map<string, Ep>();
  for (const slice of slices) {
    if (familyOfSlice(slice) !== family) continue;
    const p = (slice.ports ?? []).find((x) => (x.name ?? '') === name && (x.protocol ?? 'TCP') === proto);
    if (!p) continue;
    const port = p.port ?? numericTarget;
    if (port === undefined || !(port >= 1 && port <= 65535)) continue;
    for (const e of slice.endpoints ?? []) {
      const ep = endpoint(e, port, family, node, cache);
      if (!ep) continue;
      const had = found.get(ep.name);
      if (!had || rank(ep) > rank(had)) found.set(ep.name, ep);
    }
  }
  return [...found.values()].sort(byAddress);
}

function endpoint(e: V1Endpoint, port: number, family: Family, node: NodeContext, cache: IpCache): Ep | null {
  // every address of an endpoint is the same pod: the API lets consumers use the first only
  const text = e.addresses?.[0];
  const ip = text === undefined ? null : cachedIp(text, cache);
  if (!ip || ip.family !== family) return null;
  const c = e.conditions;
  // nil ready and nil serving mean true, nil terminating false (the API's own reading)
  const ep: Ep = {
    ip,
    port,
    name: backendName({ ip, port }),
    ready: c?.ready ?? true,
    serving: c?.serving ?? true,
    terminating: c?.terminating ?? false,
    local: e.nodeName !== undefined && e.nodeName === node.nodeName,
  };
  const h = e.hints;
  if (h) {
    if (h.forZones?.length) ep.zones = h.forZones.map((z) => z.name);
    if (h.forNodes?.length) ep.nodes = h.forNodes.map((n) => n.name);
  }
  return ep;
}

/**
 * Topology hints, used as kube-proxy uses them: only when every ready endpoint carries a hint (one
 * without means the hints are being rewritten: use them all), and only when some endpoint is hinted
 * for this node (node hints) or this node's zone (zone hints); otherwise the hints are ignored.
 */
function byHints(ready: Ep[], node: NodeContext): Ep[] {
  if (ready.length === 0) return ready;
  if (ready.every((e) => e.nodes)) {
    const mine = ready.filter((e) => e.nodes!.includes(node.nodeName));
    if (mine.length) return mine;
  }
  if (node.zone !== undefined && ready.every((e) => e.zones)) {
    const mine = ready.filter((e) => e.zones!.includes(node.zone!));
    if (mine.length) return mine;
  }
  return ready;
}

/**
 * The backends of one VIP: ready endpoints; when none is ready, the serving and terminating ones
 * (kube-proxy's fallback, so a rolling update of every pod still answers); every other terminating
 * endpoint stays as `draining` (no new connections, established ones finish). Not ready and not
 * terminating endpoints are left out.
 */
function choose(eps: Ep[], hints: boolean, node: NodeContext): BackendSpec[] {
  const ready = eps.filter((e) => e.ready);
  let active = hints ? byHints(ready, node) : ready;
  if (active.length === 0) active = eps.filter((e) => e.serving && e.terminating);
  const used = new Set(active);
  const draining = eps.filter((e) => e.terminating && !used.has(e));
  const out = [...active.map((e) => backend(e, 'active')), ...draining.map((e) => backend(e, 'draining'))];
  return out;
}

function backend(e: Ep, state: BackendState): BackendSpec {
  const as = (e.as ??= {});
  return (as[state] ??= { ip: e.ip, port: e.port, weight: 1, state, name: e.name });
}

function affinityOf(svc: V1Service): number {
  if (svc.spec?.sessionAffinity !== 'ClientIP') return 0;
  const t = svc.spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_SECONDS;
  // the API server holds it to 1..86400; a value outside is clamped rather than refused
  return Math.min(Math.max(Math.trunc(t), 1), MAX_AFFINITY_SECONDS);
}

/** Unique VIPs in first-seen order; `bad` collects the texts that are not addresses. */
function ips(texts: readonly (string | undefined)[], bad: string[]): Ip[] {
  const out: Ip[] = [];
  const seen = new Set<string>();
  for (const t of texts) {
    if (t === undefined || t === '') continue;
    const ip = parseIp(t);
    if (!ip) {
      bad.push(t);
      continue;
    }
    if (seen.has(ip.text)) continue;
    seen.add(ip.text);
    out.push(ip);
  }
  return out;
}

/**
 * One Service and all its EndpointSlices (selected by the `kubernetes.io/service-name` label) as
 * balancer specs. Never throws on what the API can hold: what cannot be balanced is said in
 * `skipped`, `refused` or `truncated`.
 */
export function translateService(svc: V1Service, slices: readonly V1EndpointSlice[], node: NodeContext): Translation {
  const spec = svc.spec ?? {};
  const namespace = svc.metadata?.namespace ?? 'default';
  const service = svc.metadata?.name ?? '';
  const type = spec.type ?? 'ClusterIP';
  if (type === 'ExternalName') return skip(`ExternalName service (a DNS name, ${spec.externalName ?? 'unset'}): nothing to balance`);
  if (spec.clusterIP === 'None') return skip('headless service (clusterIP: None): clients reach the pods directly');
  const clusterTexts = spec.clusterIPs && spec.clusterIPs.length ? spec.clusterIPs : [spec.clusterIP];
  if (!clusterTexts.some((t) => t !== undefined && t !== '')) return skip('no cluster IP allocated yet');
  if (!spec.ports || spec.ports.length === 0) return skip('service has no ports');

  const out: Translation = { specs: [], refused: [], truncated: [] };
  const bad: string[] = [];
  const clusterIps = ips(clusterTexts, bad);
  const families = new Set(clusterIps.map((ip) => ip.family));
  const externalIps = ips(spec.externalIPs ?? [], bad);
  // an ingress IP in Proxy mode is reached through the load balancer, which sends to a node port:
  // kube-proxy does not take the IP for itself then, and neither does the translation
  const lbIps = type === 'LoadBalancer' ? ips((svc.status?.loadBalancer?.ingress ?? []).filter((i) => i.ipMode !== 'Proxy').map((i) => i.ip), bad) : [];
  const nodePorts = type === 'NodePort' || type === 'LoadBalancer';
  const internalLocal = spec.internalTrafficPolicy === 'Local';
  const externalLocal = spec.externalTrafficPolicy === 'Local';
  const affinity = affinityOf(svc);
  // sorted by name so that which copy of a duplicated endpoint is seen first does not depend on the caller's order
  const ordered = [...slices].sort((a, b) => {
    const x = a.metadata?.name ?? '';
    const y = b.metadata?.name ?? '';
    return x < y ? -1 : x > y ? 1 : 0;
  });
  const claimed = new Set<string>();
  const ipCache: IpCache = new Map();
  let localEndpoints = 0;

  for (const sp of spec.ports) {
    const origin: K8sOrigin = { namespace, service, portName: sp.name ?? '', port: sp.port };
    const where = originName(origin);
    const protoText = sp.protocol ?? 'TCP';
    const proto = PROTOS[protoText];
    if (!proto) {
      out.refused.push({ port: where, reason: protoText === 'SCTP' ? 'SCTP is not balanced: the socket hooks translate TCP and UDP only' : `protocol ${protoText} is not balanced (TCP and UDP only)` });
      continue;
    }
    if (bad.length) out.refused.push({ port: where, reason: `not an IP address, left out: ${bad.join(', ')}` });
    const cache = new Map<Family, Ep[]>();
    const eps = (f: Family): Ep[] => {
      let e = cache.get(f);
      if (!e) cache.set(f, (e = endpointsFor(sp, protoText, f, ordered, node, ipCache)));
      return e;
    };
    const add = (ip: Ip, port: number, vipKind: VipKind): void => {
      const all = eps(ip.family);
      const external = vipKind !== 'clusterIP';
      const local = external ? externalLocal : internalLocal;
      const localEps = all.filter((e) => e.local);
      // internalTrafficPolicy: Local has no fallback to other nodes; topology hints only apply to Cluster
      const backends = vipKind === 'clusterIP' && local ? choose(localEps, false, node) : choose(all, !local, node);
      const addr = { ip, port, proto };
      const name = serviceName(addr);
      // one VIP named twice (an external IP that is also the load balancer's): the first kind wins
      if (claimed.has(name)) return;
      claimed.add(name);
      const s: K8sServiceSpec = {
        ...addr,
        name,
        affinity,
        backends: cap(backends, where, name, out),
        origin,
        vipKind,
        trafficPolicy: local ? 'Local' : 'Cluster',
      };
      if (external && local) s.localBackends = cap(choose(localEps, false, node), where, `${name} (local)`, out);
      // valid by construction (one family, each backend once, at most the limit): the unit tests
      // hold every translation to checkService, which costs too much to repeat at 100,000 endpoints
      out.specs.push(s);
    };
    for (const ip of clusterIps) add(ip, sp.port, 'clusterIP');
    // a Service exists in the families of its cluster IPs only (kube-proxy runs one proxier per
    // family): an external, ingress or node address of another family is no VIP of it
    const ofService = (ip: Ip): boolean => families.has(ip.family);
    for (const ip of externalIps.filter(ofService)) add(ip, sp.port, 'externalIP');
    for (const ip of lbIps.filter(ofService)) add(ip, sp.port, 'loadBalancer');
    if (nodePorts && sp.nodePort) for (const ip of node.nodeAddresses.filter(ofService)) add(ip, sp.nodePort, 'nodePort');
    if (externalLocal) localEndpoints = Math.max(localEndpoints, ...([4, 6] as Family[]).map((f) => eps(f).filter((e) => e.local && e.ready).length));
  }
  if (externalLocal && type === 'LoadBalancer' && spec.healthCheckNodePort) out.healthCheck = { nodePort: spec.healthCheckNodePort, localEndpoints };
  return out;
}

/** At most LB_MAX_BACKENDS_PER_SVC backends: the active ones first, then by address. */
function cap(bs: BackendSpec[], where: string, name: string, out: Translation): BackendSpec[] {
  if (bs.length <= LB_MAX_BACKENDS_PER_SVC) return bs;
  out.truncated.push({
    port: where,
    reason: `${name} has ${bs.length} endpoints; the balancer holds at most ${LB_MAX_BACKENDS_PER_SVC} per service: kept the first ${LB_MAX_BACKENDS_PER_SVC} (active first, then by address), ${bs.length - LB_MAX_BACKENDS_PER_SVC} left out`,
  });
  return bs.slice(0, LB_MAX_BACKENDS_PER_SVC);
}
