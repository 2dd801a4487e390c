// SPDX-License-Identifier: Apache-2.0
// A JSON config file is read by JSON.parse (large rule lists without the YAML parser's memory), to
// exactly what the YAML parser reads from it; duplicate names are still refused.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonChunks } from '../../src/agent/json.js';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../../src/agent/config.js';

describe('JSON config files', () => {
  it('read the same as through YAML', () => {
    const text = JSON.stringify({ api: { bodyLimit: 65536 }, filter: { interfaces: ['eth9'], rules: ['deny udp/53', 'allow tcp/22 from 10.0.0.0/8', 'deny TCP/80'], default: 'deny', audit: true, maxRules: 20000 } });
    const viaJson = parseConfig(text, 'c.json');
    expect(viaJson.filter?.rules).toEqual([
      { action: 'deny', match: 'udp/53' },
      { action: 'allow', match: 'tcp/22 from 10.0.0.0/8' },
      { action: 'deny', match: 'tcp/80' },
    ]);
    // the YAML parser on the same text (what parseConfig did for every file before)
    expect(viaJson).toEqual(parseConfig(`# yaml\n${text}`, 'c.json'));
    expect(parseYaml(text)).toEqual(JSON.parse(text));
  });

  it('a duplicate name is refused as before, with one line', () => {
    const text = '{"filter": {"default": "allow", "default": "deny"}}';
    expect(() => parseConfig(text, 'c.json')).toThrow(/^read config c\.json:1:33: map keys must be unique: /);
  });

  it('100,000 rules', () => {
    const rules = Array.from({ length: 100_000 }, (_, i) => `deny udp/${(i % 65535) + 1} from 10.${(i >> 8) & 255}.${i & 255}.0/24`);
    const c = parseConfig(JSON.stringify({ filter: { interfaces: ['eth9'], rules, maxRules: 200000 } }), 'big.json');
    expect(c.filter?.rules.length).toBe(100_000);
    expect(c.filter?.rules[99_999]).toEqual({ action: 'deny', match: 'udp/34465 from 10.134.159.0/24' });
  });

  it('jsonChunks joins to JSON.stringify, whatever the value and chunk size', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.integer({ min: 1, max: 64 }), (v, size) => {
        expect([...jsonChunks(v, size)].join('')).toBe(JSON.stringify(v));
      }),
    );
    const d = { when: new Date(0), list: [undefined, { a: undefined, b: [1] }] };
    expect([...jsonChunks(d, 2)].join('')).toBe(JSON.stringify(d));
  });
});
