// SPDX-License-Identifier: Apache-2.0
// The `lb apply` file: YAML (or JSON, which is YAML too). The file is the whole set of services:
//
//   services:
//     - service: 10.96.0.10:80/tcp
//       affinity: 10800              # optional: seconds a client namespace keeps its backend
//       backends:
//         - 10.244.1.5:8080          # the same syntax as --backend
//         - 10.244.2.7:8080,weight=2
//         - { address: "[fd00::7]:8080", weight: 1, state: draining }
//
// Every mistake is reported with where it is (`services[2].backends[0]`) before anything is written.
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { EbpfnetError } from '../errors.js';
import { checkService, parseAffinity, parseBackend, parseServiceAddr, parseState, parseWeight, type BackendSpec, type BackendState, type ServiceAddr, type ServiceSpec } from './model.js';

const SERVICE_KEYS = ['service', 'affinity', 'backends'];
const BACKEND_KEYS = ['address', 'weight', 'state'];

const usage = (op: string, detail: string, hint?: string): EbpfnetError => new EbpfnetError('EBPFNET_USAGE', op, detail, { hint });

/** The YAML parser, loaded on first use: a JSON file (what generated sets are) never needs its 70 modules. */
let yamlModule: typeof Yaml | undefined;
const yaml = (): typeof Yaml => (yamlModule ??= createRequire(import.meta.url)('yaml') as typeof Yaml);

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** A usage error from parsing one item, said again with where the item is. */
function located(e: unknown, op: string, where: string): unknown {
  if (e instanceof EbpfnetError && e.code === 'EBPFNET_USAGE') {
    const detail = e.message.startsWith(`${op}: `) ? e.message.slice(op.length + 2) : e.message;
    return new EbpfnetError('EBPFNET_USAGE', op, `${where}: ${detail}`);
  }
  return e;
}

// Every service and backend of a file goes through here (10,000 in a fresh `lb apply`, mostly before
// V8 optimizes anything): the common path makes no closure and no text for `where`; `list[index]`
// is spelled out only for an error (index < 0: `list` alone names the item).
const whereOf = (list: string, index: number): string => (index < 0 ? list : `${list}[${index}]`);

function backendOf(x: unknown, op: string, list: string, index: number): BackendSpec {
  if (typeof x === 'string') {
    try {
      return parseBackend(x, op);
    } catch (e) {
      throw located(e, op, whereOf(list, index));
    }
  }
  const where = whereOf(list, index);
  if (!isObj(x)) throw usage(op, `${where}: a backend is "IP:PORT[,weight=N][,state=draining]" or a map with address, weight, state`);
  for (const k of Object.keys(x)) if (!BACKEND_KEYS.includes(k)) throw usage(op, `${where}: unknown key '${k}'`, `a backend has ${BACKEND_KEYS.join(', ')}`);
  if (typeof x.address !== 'string') throw usage(op, `${where}: address is missing`, 'write address: IP:PORT');
  try {
    const b = parseBackend(x.address, op);
    if (x.weight !== undefined) b.weight = parseWeight(x.weight as number, op, `backend ${x.address}`);
    if (x.state !== undefined) b.state = parseState(x.state as string, op, `backend ${x.address}`);
    return b;
  } catch (e) {
    throw located(e, op, where);
  }
}

/**
 * One service as the file writes it (`{service, affinity?, backends}`), checked. The agent's config
 * file and HTTP API read services through this too: one grammar for every way in.
 */
export function parseServiceEntry(x: unknown, op: string, where: string): ServiceSpec {
  return serviceOf(x, op, where, -1);
}

function serviceOf(x: unknown, op: string, list: string, index: number): ServiceSpec {
  if (!isObj(x)) throw usage(op, `${whereOf(list, index)}: a service is a map with service, backends and (optionally) affinity`);
  for (const k of Object.keys(x)) if (!SERVICE_KEYS.includes(k)) throw usage(op, `${whereOf(list, index)}: unknown key '${k}'`, `a service has ${SERVICE_KEYS.join(', ')}`);
  if (typeof x.service !== 'string') throw usage(op, `${whereOf(list, index)}: service is missing`, 'write service: VIP:PORT/PROTO, e.g. 10.96.0.10:80/tcp');
  let addr: ServiceAddr;
  try {
    addr = parseServiceAddr(x.service, op);
  } catch (e) {
    throw located(e, op, whereOf(list, index));
  }
  const bs = x.backends ?? [];
  if (!Array.isArray(bs)) throw usage(op, `${whereOf(list, index)}.backends: expected a list`);
  // sized up front: an array grown by push from empty holds room for 17 (185 bytes for one backend)
  const backends = new Array<BackendSpec>(bs.length);
  if (bs.length) {
    const at = `${whereOf(list, index)}.backends`;
    for (let i = 0; i < bs.length; i++) backends[i] = backendOf(bs[i], op, at, i);
  }
  try {
    const affinity = parseAffinity(x.affinity as number | boolean | undefined, op, `service ${addr.name}`);
    return checkService({ ip: addr.ip, port: addr.port, proto: addr.proto, name: addr.name, affinity, backends }, op);
  } catch (e) {
    throw located(e, op, whereOf(list, index));
  }
}

/**
 * YAML (a superset of JSON) into plain values. JSON goes through JSON.parse first: the YAML parser
 * takes about 85 us per service, JSON.parse a hundredth of that, which matters for 10,000 services.
 * Invalid JSON falls through to the YAML parser, whose errors name a line.
 */
function parseText(text: string, op: string): unknown {
  const head = text.trimStart()[0];
  if (head === '{' || head === '[') {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      /* reported by the YAML parser below, with a line number */
    }
  }
  const { isMap, isSeq, parseDocument } = yaml();
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const line = e.linePos?.[0];
    const what = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    throw usage(op, `${line ? `line ${line.line}: ` : ''}${what}`, 'the file is YAML or JSON: see ebpfnet lb apply --help');
  }
  if (doc.contents && !isMap(doc.contents) && !isSeq(doc.contents)) throw usage(op, 'expected a map with services: [...] or a list of services');
  try {
    return doc.toJS() as unknown;
  } catch (e) {
    // an alias without its anchor, or one expanded too often (a "billion laughs" file), shows only here
    throw usage(op, (e as Error).message.split('\n')[0].toLowerCase(), 'the file is YAML or JSON: see ebpfnet lb apply --help');
  }
}

/** Parses the file's text into the complete set of services. `name` is for messages. */
export function parseServiceFile(text: string, name: string): ServiceSpec[] {
  const op = `lb apply ${name}`;
  const root = parseText(text, op);
  let list: unknown;
  if (root === null || root === undefined) list = [];
  else if (Array.isArray(root)) list = root;
  else if (isObj(root)) {
    for (const k of Object.keys(root)) if (k !== 'services') throw usage(op, `unknown top-level key '${k}'`, 'the file has one key: services');
    list = root.services ?? [];
  }
  return parseServiceList(list, op);
}

/** A list of services (`where` names it in messages), each service at most once. */
export function parseServiceList(list: unknown, op: string, where = 'services'): ServiceSpec[] {
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw usage(op, `${where}: expected a list`);
  const out: ServiceSpec[] = [];
  for (let i = 0; i < list.length; i++) out.push(serviceOf(list[i], op, where, i));
  const seen = new Map<string, number>();
  for (let i = 0; i < out.length; i++) {
    const n = out[i].name;
    const first = seen.get(n);
    if (first !== undefined) throw usage(op, `${where}[${i}]: ${n} is already defined at ${where}[${first}]`);
    seen.set(n, i);
  }
  return out;
}

/** A service in the file's own form, canonical: what `parseServiceEntry` reads back unchanged. */
export interface ServiceEntry {
  service: string;
  affinity: number;
  backends: Array<{ address: string; weight: number; state: BackendState }>;
}

export const serviceEntry = (s: ServiceSpec): ServiceEntry => ({
  service: s.name,
  affinity: s.affinity,
  backends: s.backends.map((b) => ({ address: b.name, weight: b.weight, state: b.state })),
});
