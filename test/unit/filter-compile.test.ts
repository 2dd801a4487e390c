// SPDX-License-Identifier: Apache-2.0
// compile.ts at scale (pure): a policy of many rules that each name a port and a source prefix
// compiles to one entry per rule in every table, and each rule's entries lead to that rule. The
// compile used to enumerate every port class of the group for every address class (quadratic);
// this checks the tables, not the time (tools/bench/filter/compile.mjs times it).
import { describe, expect, it } from 'vitest';
import { compilePolicy, DEFAULT_CAPACITY, type CompiledPolicy } from '../../src/filter/compile.js';
import { makePolicy } from '../../src/filter/policy.js';
import { parseCidr, PROTO_NUMBERS } from '../../src/filter/rules.js';
import * as F from '../../src/gen/filter.js';

const big = { ...DEFAULT_CAPACITY, rules: 1 << 16 };

/** The kernel's path for an IPv4 UDP packet from `src` to port `port`, through the S group only. */
function sGroupVerdict(c: CompiledPolicy, src: string, port: number): number | null {
  const a = parseCidr(src).addr;
  const cls = c.src.filter((e) => e.family === 4 && (a >> BigInt(32 - e.prefix)) === (e.addr >> BigInt(32 - e.prefix))).sort((x, y) => y.prefix - x.prefix)[0]?.value.cls;
  const pe = [...c.ports.rows()].find(([k]) => k.port === port && k.proto === PROTO_NUMBERS.udp && k.family === 4);
  if (cls === undefined || !pe) return null;
  const d = [...c.decisions.entries()].find(([k]) => k.group === F.FLT_G_S && k.src === cls && k.proto === PROTO_NUMBERS.udp && k.pclass === c.portVals[pe[1] - 1].pc_s);
  return d ? d[1].rule : null;
}

describe('compile of many port-and-address rules', () => {
  it('20,000 rules `udp/P from 10.a.b.0/24`: one port, port value, prefix and decision each', () => {
    const n = 20_000;
    const deny = Array.from({ length: n }, (_, i) => `udp/${i + 1} from 10.${(i >> 8) & 255}.${i & 255}.0/24`);
    const c = compilePolicy(makePolicy({ deny }), undefined, big);
    expect(c.ports.length).toBe(n);
    expect(c.portVals.length).toBe(n);
    expect(c.src.length).toBe(n);
    expect(c.dst.length).toBe(0);
    expect(c.decisions.length).toBe(n);
    expect(new Set([...c.decisions.entries()].map(([, v]) => v.rule)).size).toBe(n);
    for (const i of [0, 1, 255, 256, 12_345, n - 1]) {
      const src = `10.${(i >> 8) & 255}.${i & 255}.7`;
      expect(sGroupVerdict(c, src, i + 1), `rule ${i}`).toBe(i);
      // the neighbouring port is another rule's, whose prefix is elsewhere: no decision
      expect(sGroupVerdict(c, src, i + 2), `rule ${i}, port + 1`).toBe(null);
    }
  });

  it('a rule without a port on a prefix still gets every port class of its protocol there', () => {
    const deny = ['udp from 10.0.0.0/24', ...Array.from({ length: 50 }, (_, i) => `udp/${i + 1} from 10.1.${i}.0/24`)];
    const c = compilePolicy(makePolicy({ deny, allow: ['udp/7 from 10.0.0.0/24'] }));
    const cls = c.src.find((e) => e.addr === parseCidr('10.0.0.0/24').addr)!.value.cls;
    const here = [...c.decisions.entries()].filter(([k]) => k.src === cls);
    // class 0 and the 51 port classes (50 ports, port 7 is one of them)
    expect(here.length).toBe(51);
    expect(sGroupVerdict(c, '10.0.0.1', 7)).toBe(51);
    expect(sGroupVerdict(c, '10.0.0.1', 9)).toBe(0);
    expect(sGroupVerdict(c, '10.1.3.1', 4)).toBe(4);
    expect(sGroupVerdict(c, '10.1.3.1', 5)).toBe(null);
  });
});
