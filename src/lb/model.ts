// SPDX-License-Identifier: Apache-2.0
// What a person writes about services, parsed and checked: `10.96.0.10:80/tcp`, `[fd00::1]:53/udp`,
// backends `IP:PORT[,weight=N][,state=active|draining]`. Every mistake is an EBPFNET_USAGE error
// (exit 2) raised before anything is written, so bad input changes nothing.
import { EbpfnetError, shownValue } from '../errors.js';
import { LB_MAX_BACKENDS_PER_SVC } from '../gen/lb.js';
import { hostPort, parseIp, type Ip } from './addr.js';

export type Proto = 'tcp' | 'udp';
export type BackendState = 'active' | 'draining';

export const PROTOS: readonly Proto[] = ['tcp', 'udp'];
export const STATES: readonly BackendState[] = ['active', 'draining'];
export const MAX_WEIGHT = 65535;
/** Kubernetes' default for sessionAffinity: ClientIP (timeoutSeconds) */
export const DEFAULT_AFFINITY_SECONDS = 10800;
/** a day: the kernel compares nanoseconds in 64 bits, so anything up to years would do, but kube caps it here */
export const MAX_AFFINITY_SECONDS = 86400;

export interface ServiceAddr {
  ip: Ip;
  port: number;
  proto: Proto;
  /** `10.96.0.10:80/tcp`, canonical: the service's identity (computed once, at parse time) */
  name: string;
}

export interface BackendSpec {
  ip: Ip;
  port: number;
  weight: number;
  state: BackendState;
  /** `10.244.1.5:8080`, canonical: the backend's identity within its service */
  name: string;
}

export interface ServiceSpec extends ServiceAddr {
  /** seconds a client network namespace keeps its backend; 0 is no affinity */
  affinity: number;
  backends: BackendSpec[];
}

const usage = (op: string, detail: string, hint?: string): EbpfnetError => new EbpfnetError('EBPFNET_USAGE', op, detail, { hint });

/** `10.96.0.10:80/tcp` */
export const serviceName = (s: Omit<ServiceAddr, 'name'>): string => (s.ip.family === 6 ? ['[', s.ip.text, ']:', s.port, '/', s.proto] : [s.ip.text, ':', s.port, '/', s.proto]).join('');
export const backendName = (b: { ip: Ip; port: number }): string => hostPort(b.ip, b.port);

// Parsing runs for every service and backend of a file (10,000 services in a fresh process, before
// V8 optimizes much), so the common path makes no closure and no message text: `kind` and `text`
// name the item, and only an error spells it out.
type Item = 'service' | 'backend';

function parsePort(s: string, op: string, kind: Item, text: string): number {
  if (!/^\d{1,5}$/.test(s)) throw usage(op, `${kind} '${text}': '${s}' is not a port`, 'a port is a number from 1 to 65535');
  const n = Number(s);
  if (n < 1 || n > 65535) throw usage(op, `${kind} '${text}': port ${n} is out of range`, 'a port is a number from 1 to 65535');
  return n;
}

/** Splits `IP:PORT` or `[IPv6]:PORT`; `port` is undefined when there is none. */
function splitHostPort(s: string, op: string, kind: Item, text: string): { ip: Ip; port: string | undefined } {
  let host: string;
  let port: string | undefined;
  const br = s[0] === '[' ? /^\[([^\]]*)\](?::(.*))?$/.exec(s) : null;
  if (br) {
    host = br[1];
    port = br[2];
  } else if (s.indexOf(':') !== s.lastIndexOf(':')) {
    // a bare IPv6 address: it cannot carry a port without brackets
    host = s;
    port = undefined;
  } else {
    const i = s.lastIndexOf(':');
    host = i < 0 ? s : s.slice(0, i);
    port = i < 0 ? undefined : s.slice(i + 1);
  }
  const ip = parseIp(host);
  if (!ip) throw usage(op, `${kind} '${text}': '${host}' is not an IP address`, 'write IPv4 as 10.96.0.10 and IPv6 in brackets: [fd00::1]:80');
  return { ip, port };
}

/** `10.96.0.10:80/tcp`, `[fd00::1]:53/udp`: the protocol is always written (the CLI, the file and the API say VIP:PORT/PROTO). */
export function parseServiceAddr(text: string, op = 'parse service'): ServiceAddr {
  const s = text.trim();
  const slash = s.lastIndexOf('/');
  if (slash < 0) throw usage(op, `service '${text}' has no protocol`, 'write VIP:PORT/PROTO, e.g. 10.96.0.10:80/tcp or [fd00::1]:53/udp');
  const addr = s.slice(0, slash);
  const protoWritten = s.slice(slash + 1);
  const protoText = protoWritten.toLowerCase();
  if (protoText !== 'tcp' && protoText !== 'udp') throw usage(op, `service '${text}': unknown protocol '${protoText}'`, `use ${PROTOS.join(' or ')}, e.g. 10.96.0.10:80/tcp`);
  const { ip, port } = splitHostPort(addr, op, 'service', text);
  if (port === undefined || port === '') throw usage(op, `service '${text}' has no port`, 'write VIP:PORT/PROTO, e.g. 10.96.0.10:80/tcp or [fd00::1]:53/udp');
  const n = parsePort(port, op, 'service', text);
  const proto: Proto = protoText;
  // written canonically already (dotted IPv4 without brackets, the port without a leading zero,
  // the protocol in lower case: the usual case): the text is the name, and no string is made
  const name = s[0] !== '[' && ip.family === 4 && port[0] !== '0' && protoWritten === protoText ? s : serviceName({ ip, port: n, proto });
  return { ip, port: n, proto, name };
}

/** `10.244.1.5:8080`, `[fd00::5]:8080,weight=2,state=draining` */
export function parseBackend(text: string, op = 'parse backend'): BackendSpec {
  const t = text.trim();
  const comma = t.indexOf(',');
  const { ip, port } = splitHostPort(comma < 0 ? t : t.slice(0, comma), op, 'backend', text);
  if (port === undefined || port === '') throw usage(op, `backend '${text}' has no port`, `write IP:PORT, e.g. ${ip.family === 6 ? `[${ip.text}]` : ip.text}:8080`);
  const p = parsePort(port, op, 'backend', text);
  const name = comma < 0 && t[0] !== '[' && ip.family === 4 && port[0] !== '0' ? t : backendName({ ip, port: p });
  const b: BackendSpec = { ip, port: p, weight: 1, state: 'active', name };
  if (comma < 0) return b;
  const seen = new Set<string>();
  for (const o of t.slice(comma + 1).split(',')) {
    const m = /^\s*([a-z]+)\s*=\s*(\S+)\s*$/.exec(o);
    if (!m) throw usage(op, `backend '${text}': '${o}' is not key=value`, 'options are weight=N and state=active|draining');
    const [, k, v] = m;
    if (seen.has(k)) throw usage(op, `backend '${text}': ${k} given twice`);
    seen.add(k);
    if (k === 'weight') b.weight = parseWeight(v, op, `backend '${text}'`);
    else if (k === 'state') b.state = parseState(v, op, `backend '${text}'`);
    else throw usage(op, `backend '${text}': unknown option '${k}'`, 'options are weight=N and state=active|draining');
  }
  return b;
}

export function parseWeight(v: string | number, op: string, what: string): number {
  // a number, or its digits as text: a list or a map is refused, not coerced ([2] is not 2)
  const s = shownValue(v);
  const n = /^\d{1,5}$/.test(s) ? Number(s) : NaN;
  if (!(n >= 1 && n <= MAX_WEIGHT))
    throw usage(op, `${what}: weight '${s}' is not a number from 1 to ${MAX_WEIGHT}`, 'to stop new connections to a backend, use state=draining');
  return n;
}

export function parseState(v: string, op: string, what: string): BackendState {
  const s = shownValue(v).toLowerCase();
  if (!STATES.includes(s as BackendState)) throw usage(op, `${what}: unknown state '${shownValue(v)}'`, `use ${STATES.join(' or ')}`);
  return s as BackendState;
}

export function parseAffinity(v: string | number | boolean | undefined, op: string, what: string): number {
  if (v === undefined || v === false) return 0;
  if (v === true) return DEFAULT_AFFINITY_SECONDS;
  const s = shownValue(v);
  const n = /^\d{1,6}$/.test(s) ? Number(s) : NaN;
  if (!(n >= 0 && n <= MAX_AFFINITY_SECONDS))
    throw usage(op, `${what}: affinity '${s}' is not a number of seconds from 0 to ${MAX_AFFINITY_SECONDS}`, `0 turns it off; Kubernetes uses ${DEFAULT_AFFINITY_SECONDS}`);
  return n;
}

/** Checks a whole service: backends of the VIP's family, each at most once. */
export function checkService(s: ServiceSpec, op = 'check service'): ServiceSpec {
  const name = s.name;
  if (s.backends.length > LB_MAX_BACKENDS_PER_SVC)
    throw usage(op, `service ${name} has ${s.backends.length} backends; at most ${LB_MAX_BACKENDS_PER_SVC}`);
  // most services have one backend: no set to build for them
  const seen = s.backends.length > 1 ? new Set<string>() : null;
  for (const b of s.backends) {
    const bn = b.name;
    if (b.ip.family !== s.ip.family) {
      throw usage(op, `service ${name}: backend ${bn} is IPv${b.ip.family} but the service is IPv${s.ip.family}`, 'a socket cannot change address family at connect(); give the service backends of its own family');
    }
    if (seen?.has(bn)) throw usage(op, `service ${name}: backend ${bn} is listed twice`);
    seen?.add(bn);
  }
  return s;
}

export function makeService(addr: string, backends: string[], affinity: number | string | boolean | undefined = 0, op = 'parse service'): ServiceSpec {
  const a = parseServiceAddr(addr, op);
  return checkService({ ...a, affinity: parseAffinity(affinity, op, `service ${a.name}`), backends: backends.map((b) => parseBackend(b, op)) }, op);
}
