// SPDX-License-Identifier: Apache-2.0
// Property tests of the agent's config file (src/agent/config.ts): a valid config, written back
// as YAML or JSON, parses to the same config; any other document is one clean usage error.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig, type AgentConfig } from '../../src/agent/config.js';
import { grammarish, parsedOrClean, RUNS } from '../helpers/props.js';

const RULES = ['tcp/22', 'icmp', 'udp/53 from 10.0.0.0/8', 'from 203.0.113.0/24', 'tcp/443 to 2001:db8::/32', 'TCP/8000-8100', 'arp', 'icmpv6'];

const validConfig = fc.record(
  {
    api: fc.record(
      {
        listen: fc.oneof(fc.constant('127.0.0.1:9900'), fc.integer({ min: 1, max: 65535 }).map(String), fc.constant('[::1]:9900')),
        token: fc.string({ minLength: 16, maxLength: 40 }),
        bodyLimit: fc.integer({ min: 1024, max: 1 << 24 }),
      },
      { requiredKeys: [] },
    ),
    filter: fc.record(
      {
        interfaces: fc.array(fc.stringMatching(/^[a-z][a-z0-9.@-]{0,14}$/), { maxLength: 3 }),
        rules: fc.array(fc.tuple(fc.constantFrom('deny', 'allow'), fc.constantFrom(...RULES)).map(([a, r]) => `${a} ${r}`), { maxLength: 6 }),
        default: fc.constantFrom('allow', 'deny'),
        audit: fc.boolean(),
        hook: fc.constantFrom('xdp', 'tc'),
        mode: fc.constantFrom('native', 'generic', 'auto'),
        // at least the rules (6 at most): more rules than maxRules is refused
        maxRules: fc.integer({ min: 6, max: 1 << 20 }),
      },
      { requiredKeys: [] },
    ),
    lb: fc.record(
      {
        cgroup: fc.constantFrom('system.slice/app.service', '/sys/fs/cgroup/ebpfnet-x', 'a'),
        services: fc.uniqueArray(
          // backends of the service's own family (a socket cannot change family at connect())
          fc.oneof(
            fc.record({
              service: fc.constantFrom('10.96.0.10:80/tcp', '10.96.0.11:53/udp'),
              affinity: fc.integer({ min: 0, max: 86400 }),
              backends: fc.uniqueArray(fc.constantFrom('10.244.1.5:8080', '10.244.2.7:8080,weight=2', '10.244.3.9:8080,weight=7,state=draining'), { maxLength: 3 }),
            }),
            fc.record({
              service: fc.constant('[fd00::1]:443/tcp'),
              affinity: fc.integer({ min: 0, max: 86400 }),
              backends: fc.uniqueArray(fc.constantFrom('[fd00::5]:80,state=draining', '[fd00::6]:8443,weight=3'), { maxLength: 2 }),
            }),
          ),
          { maxLength: 3, selector: (s) => s.service },
        ),
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);

/** A parsed config as a file again: rules back to 'action match' lines. */
const asFile = (c: AgentConfig): Record<string, unknown> => ({
  api: c.api,
  ...(c.filter ? { filter: { ...c.filter, rules: c.filter.rules.map((r) => `${r.action} ${r.match}`) } } : {}),
  ...(c.lb
    ? {
        lb: {
          ...(c.lb.cgroup === null ? {} : { cgroup: c.lb.cgroup }),
          services: c.lb.services.map((v) => ({ service: v.name, affinity: v.affinity, backends: v.backends.map((b) => `${b.name},weight=${b.weight},state=${b.state}`) })),
        },
      }
    : {}),
  ...(c.trace ? { trace: c.trace } : {}),
});

describe('agent config file properties', () => {
  it('a valid config parses; written back as YAML and JSON it parses to the same config', () => {
    fc.assert(
      fc.property(validConfig, fc.boolean(), (doc, asJson) => {
        const c = parseConfig(asJson ? JSON.stringify(doc) : stringify(doc), 'c.yaml');
        expect(c.filter?.rules.length ?? 0).toBe((doc.filter?.rules ?? []).length);
        expect(parseConfig(stringify(asFile(c)), 'back.yaml')).toEqual(c);
        expect(parseConfig(JSON.stringify(asFile(c)), 'back.json')).toEqual(c);
      }),
      { numRuns: RUNS.yaml },
    );
  });

  it('any document: a config that round-trips, or one clean usage error', () => {
    const section = fc.dictionary(fc.constantFrom('listen', 'token', 'bodyLimit', 'interfaces', 'rules', 'default', 'audit', 'hook', 'mode', 'maxRules', 'x'), fc.jsonValue({ maxDepth: 2 }));
    const anyDoc = fc.oneof(
      fc.jsonValue().map((v) => stringify(v)),
      fc.record({ api: fc.oneof(section, fc.jsonValue()), filter: fc.oneof(section, fc.jsonValue()) }, { requiredKeys: [] }).map((v) => stringify(v)),
      fc.record({ filter: fc.record({ rules: fc.array(grammarish(['deny', 'allow', ...RULES, 'from', 'to']), { maxLength: 3 }) }) }).map((v) => stringify(v)),
      fc.string({ maxLength: 80 }),
      fc.constantFrom('*a :', 'filter: {rules: [*x]}', `a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [${'*a,'.repeat(9)}*a]\nc: &c [${'*b,'.repeat(9)}*b]\nlb: {d: [${'*c,'.repeat(99)}*c]}`),
      grammarish(['api:', 'filter:', 'rules:', '- ', 'listen: ', '{', '}', '[', ']', '\n', '  ', '&a', '*a', '!!binary', '<<:', '"', '%YAML 1.2', '---', '...']),
    );
    fc.assert(
      fc.property(anyDoc, (text) => {
        const c = parsedOrClean(() => parseConfig(text, 'c.yaml'));
        if (c) expect(parseConfig(stringify(asFile(c)), 'back.yaml')).toEqual(c);
      }),
      { numRuns: RUNS.yaml * 2 },
    );
  });

  // Each field against any JSON value: accepted exactly when it is of the documented kind, never
  // coerced ('[object Object]' as an address) or quietly dropped (audit: "yes" read as false).
  const FIELDS: Array<[string, string, (v: unknown) => boolean]> = [
    ['api', 'listen', (v) => typeof v === 'string' || typeof v === 'number'],
    ['api', 'bodyLimit', (v) => Number.isInteger(v) && (v as number) >= 1024],
    ['filter', 'audit', (v) => typeof v === 'boolean' || v === null],
    ['filter', 'hook', (v) => v === 'xdp' || v === 'tc' || v === null],
    ['filter', 'default', (v) => v === 'allow' || v === 'deny' || v === null],
    ['filter', 'maxRules', (v) => (Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 1 << 20) || v === null],
  ];
  it.each(FIELDS)('%s.%s: accepted exactly when it is of its kind', (section, key, valid) => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom('yes', 'no', 'true', 'on', 1, 0)), (v) => {
        const c = parsedOrClean(() => parseConfig(JSON.stringify({ [section]: { [key]: v } }), 'c.json'));
        expect(c !== null, `${section}.${key}: ${JSON.stringify(v)}`).toBe(valid(v));
      }),
      { numRuns: RUNS.yaml },
    );
  });
});
