// SPDX-License-Identifier: Apache-2.0
// A JSON config file is read by JSON.parse (large rule lists without the YAML parser's memory), to
// exactly what the YAML parser reads from it; duplicate names are still refused.
import { describe, expect, it } from 'vitest';
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
    expect(() => parseConfig(text, 'c.json')).toThrow(/read config c\.json: .*unique/);
  });

  it('100,000 rules', () => {
    const rules = Array.from({ length: 100_000 }, (_, i) => `deny udp/${(i % 65535) + 1} from 10.${(i >> 8) & 255}.${i & 255}.0/24`);
    const c = parseConfig(JSON.stringify({ filter: { interfaces: ['eth9'], rules, maxRules: 200000 } }), 'big.json');
    expect(c.filter?.rules.length).toBe(100_000);
    expect(c.filter?.rules[99_999]).toEqual({ action: 'deny', match: 'udp/34465 from 10.134.159.0/24' });
  });
});
