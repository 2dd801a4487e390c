// SPDX-License-Identifier: Apache-2.0
// Property tests of the balancer's parsers: service addresses and backends (src/lb/model.ts over
// src/lb/addr.ts) and the `lb apply` file (src/lb/file.ts). Valid input prints back (its canonical
// name, the file re-serialised) to input that parses the same; anything else is one clean usage
// error, never a TypeError or a raw YAML exception.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseServiceFile } from '../../src/lb/file.js';
import { parseBackend, parseServiceAddr, type ServiceSpec } from '../../src/lb/model.js';
import { grammarish, ipv4, ipv6, parsedOrClean, RUNS } from '../helpers/props.js';

const port = fc.integer({ min: 1, max: 65535 });
const hostPort = (v6: boolean, a: { text: string }, p: number): string => (v6 ? `[${a.text}]:${p}` : `${a.text}:${p}`);
const service = fc.record({ v6: fc.boolean(), a4: ipv4, a6: ipv6, port, proto: fc.constantFrom('tcp', 'udp', 'TCP', 'Udp') });
const serviceText = service.map((s) => `${hostPort(s.v6, s.v6 ? s.a6 : s.a4, s.port)}/${s.proto}`);
/** a backend of one family (v6 true/false), or of either */
const backendOf = (family?: boolean): fc.Arbitrary<string> =>
  fc
    .record({ v6: family === undefined ? fc.boolean() : fc.constant(family), a4: ipv4, a6: ipv6, port, weight: fc.option(fc.integer({ min: 1, max: 65535 })), state: fc.option(fc.constantFrom('active', 'draining', 'DRAINING')) })
    .map((b) => `${hostPort(b.v6, b.v6 ? b.a6 : b.a4, b.port)}${b.weight ? `,weight=${b.weight}` : ''}${b.state ? `,state=${b.state}` : ''}`);
const backendText = backendOf();
const TOKENS = ['10.96.0.10', '[fd00::1]', 'fd00::1', ':80', '/tcp', '/udp', '/sctp', ',weight=2', ',state=draining', 'weight=0', ':0', ':65536', '::ffff:1.2.3.4', '[', ']'];

/** What a service is, for comparing two parses: names, weights, states, affinity. */
const shape = (s: ServiceSpec) => ({ name: s.name, affinity: s.affinity, backends: s.backends.map((b) => [b.name, b.weight, b.state]) });

describe('service address and backend properties', () => {
  it('a valid service address parses to a canonical name that parses to the same service', () => {
    fc.assert(
      fc.property(serviceText, (text) => {
        const a = parseServiceAddr(text);
        const b = parseServiceAddr(a.name);
        expect(b.name).toBe(a.name);
        expect([...b.ip.bytes]).toEqual([...a.ip.bytes]);
        expect([b.port, b.proto]).toEqual([a.port, a.proto]);
      }),
      { numRuns: RUNS.cheap },
    );
  });

  it('a valid backend parses, and its name with its options parses to the same backend', () => {
    fc.assert(
      fc.property(backendText, (text) => {
        const a = parseBackend(text);
        const b = parseBackend(`${a.name},weight=${a.weight},state=${a.state}`);
        expect({ ...b, ip: b.ip.text }).toEqual({ ...a, ip: a.ip.text });
      }),
      { numRuns: RUNS.cheap },
    );
  });

  it('any string: a service or backend, or one clean usage error', () => {
    fc.assert(
      fc.property(grammarish(TOKENS), (text) => {
        const s = parsedOrClean(() => parseServiceAddr(text));
        if (s) expect(parseServiceAddr(s.name).name).toBe(s.name);
        const b = parsedOrClean(() => parseBackend(text));
        if (b) expect(parseBackend(b.name).name).toBe(b.name);
      }),
      { numRuns: RUNS.cheap },
    );
  });
});

describe('lb apply file properties', () => {
  // backends of the service's family (a mixed service is refused, which the other property covers)
  const serviceEntry = service.chain((sv) =>
    fc.record({
      service: fc.constant(`${hostPort(sv.v6, sv.v6 ? sv.a6 : sv.a4, sv.port)}${sv.proto ? `/${sv.proto}` : ''}`),
      affinity: fc.option(fc.oneof(fc.integer({ min: 0, max: 86400 }), fc.boolean()), { nil: undefined }),
      backends: fc.array(fc.oneof(backendOf(sv.v6), backendOf(sv.v6).map((t) => ({ address: t.split(',')[0] }))), { maxLength: 4 }),
    }),
  );

  it('a valid file parses; written back as YAML and as JSON it parses to the same services', () => {
    let parsedFiles = 0;
    fc.assert(
      fc.property(fc.array(serviceEntry, { maxLength: 4 }), fc.boolean(), (entries, asJson) => {
        const doc = { services: entries.map((e) => (e.affinity === undefined ? { service: e.service, backends: e.backends } : e)) };
        const parsed = parsedOrClean(() => parseServiceFile(asJson ? JSON.stringify(doc) : stringify(doc), 'f.yaml'));
        // valid pieces can still make an invalid whole: a family mix, a duplicate backend or service
        if (!parsed) return;
        parsedFiles++;
        const back = {
          services: parsed.map((s) => ({ service: s.name, affinity: s.affinity, backends: s.backends.map((b) => ({ address: b.name, weight: b.weight, state: b.state })) })),
        };
        expect(parseServiceFile(stringify(back), 'back.yaml').map(shape)).toEqual(parsed.map(shape));
        expect(parseServiceFile(JSON.stringify(back), 'back.json').map(shape)).toEqual(parsed.map(shape));
      }),
      { numRuns: RUNS.yaml },
    );
    // the round trip must actually run: most generated files are valid
    expect(parsedFiles).toBeGreaterThan(RUNS.yaml / 2);
  });

  it('any JSON value or YAML text: services, or one clean usage error', () => {
    const anyDoc = fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.jsonValue().map((v) => stringify(v)),
      fc.record({ services: fc.array(fc.oneof(fc.jsonValue(), fc.dictionary(fc.constantFrom('service', 'backends', 'affinity', 'weight'), fc.jsonValue())), { maxLength: 3 }) }).map((v) => stringify(v)),
      fc.string({ maxLength: 80 }),
      // an alias without its anchor, and an alias bomb: errors that YAML raises only when converting
      fc.constantFrom('*a :', '? *a', 'services: [*x]', `a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [${'*a,'.repeat(9)}*a]\nc: &c [${'*b,'.repeat(9)}*b]\nd: [${'*c,'.repeat(99)}*c]`),
      grammarish(['services:', '- ', 'service:', 'backends:', '{', '}', '[', ']', '\n', '  ', '&a', '*a', '!!binary', '<<:', '"', "'"]),
    );
    fc.assert(
      fc.property(anyDoc, (text) => {
        parsedOrClean(() => parseServiceFile(text, 'f.yaml'));
      }),
      { numRuns: RUNS.yaml * 2 },
    );
  });

  // Each field of a service or backend map against any JSON value: accepted exactly when it is of
  // its documented kind; never coerced ([2] as weight 2) and never a TypeError ({"toString": 0}).
  const FIELDS: Array<[string, (v: unknown) => object, (v: unknown) => boolean]> = [
    ['weight', (v) => ({ service: '10.96.0.10:80/tcp', backends: [{ address: '10.0.0.1:80', weight: v }] }), (v) => (typeof v === 'number' || typeof v === 'string') && /^\d{1,5}$/.test(String(v)) && Number(v) >= 1 && Number(v) <= 65535],
    ['state', (v) => ({ service: '10.96.0.10:80/tcp', backends: [{ address: '10.0.0.1:80', state: v }] }), (v) => typeof v === 'string' && ['active', 'draining'].includes(v.toLowerCase())],
    ['address', (v) => ({ service: '10.96.0.10:80/tcp', backends: [{ address: v }] }), (v) => typeof v === 'string' && parsedOrClean(() => parseBackend(v)) !== null && parseBackend(v).ip.family === 4],
    ['affinity', (v) => ({ service: '10.96.0.10:80/tcp', affinity: v }), (v) => v === false || v === true || ((typeof v === 'number' || typeof v === 'string') && /^\d{1,6}$/.test(String(v)) && Number(v) <= 86400)],
  ];
  it.each(FIELDS)('%s: accepted exactly when it is of its kind', (_name, doc, valid) => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom('2', 2, [2], ['draining'], 'DRAINING', { toString: 0 }, '10.0.0.2:80', 60)), (v) => {
        const out = parsedOrClean(() => parseServiceFile(JSON.stringify({ services: [doc(v)] }), 'f.json'));
        expect(out !== null, JSON.stringify(v)).toBe(valid(v));
      }),
      { numRuns: RUNS.yaml },
    );
  });
});
