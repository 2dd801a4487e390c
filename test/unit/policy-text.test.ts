// SPDX-License-Identifier: Apache-2.0
// The one policy-line grammar (rules.ts parseRuleLine) as a --policy file (policy.ts parsePolicyText)
// and the agent's filter.rules read it: the same rules, the same refusals.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/agent/config.js';
import { makePolicy, parsePolicyText } from '../../src/filter/policy.js';
import { formatRule, parseRuleLine } from '../../src/filter/rules.js';

describe('policy lines', () => {
  it('a file: rules in order, the first default, comments and blank lines skipped', () => {
    const f = parsePolicyText('# ssh only from the office\nallow tcp/22 from 10.0.0.0/8\n\ndeny tcp/22   # everyone else\ndefault deny\ndefault allow\n', 'p.txt');
    expect(f.rules.map(formatRule)).toEqual(['allow tcp/22 from 10.0.0.0/8', 'deny tcp/22']);
    expect(f.default).toBe('deny');
  });

  it('refusals name the file and line', () => {
    expect(() => parsePolicyText('deny tcp/22\npermit udp/53\n', 'p.txt')).toThrow("read policy p.txt: line 2: 'permit' is not deny, allow or default");
    expect(() => parsePolicyText('deny\n', 'p.txt')).toThrow(/^parse policy p\.txt line 1: not 'deny RULE' or 'allow RULE'/);
    expect(() => parsePolicyText('\ndeny tcp/99999\n', 'p.txt')).toThrow(/port 99999 is out of range/);
  });

  it('the agent config reads the same lines to the same rules', () => {
    const lines = ['deny tcp/22', 'allow udp/53 from 192.168.0.0/16', 'deny icmp'];
    const cfg = parseConfig(`filter:\n  interfaces: [eth0]\n  rules: ${JSON.stringify(lines)}\n`);
    expect(cfg.filter!.rules.map((r) => `${r.action} ${r.match}`)).toEqual(lines.map((l) => formatRule(parseRuleLine(l))));
    expect(cfg.filter!.rules.map((r) => `${r.action} ${r.match}`)).toEqual(parsePolicyText(lines.join('\n'), 'f').rules.map(formatRule));
  });

  it('flags and a file together: denies, then allows, each flags first', () => {
    const p = makePolicy({ deny: ['tcp/23'], allow: ['tcp/80'], more: parsePolicyText('allow tcp/443\ndeny tcp/25\n', 'f').rules });
    expect(p.rules.map(formatRule)).toEqual(['deny tcp/23', 'deny tcp/25', 'allow tcp/80', 'allow tcp/443']);
  });
});
