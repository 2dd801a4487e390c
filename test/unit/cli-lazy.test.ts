// SPDX-License-Identifier: Apache-2.0
// A run loads only the module of the command it names (base.ts); the whole tree (program.ts) is
// what help and the tests see. The two must name the same commands and build them alike.
import { isIPv4, isIPv6 } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { COMMANDS, programFor } from '../../src/cli/base.js';
import { buildProgram } from '../../src/cli/program.js';
import { parseIp } from '../../src/lb/addr.js';

describe('cli: one command loaded at a time', () => {
  it('names every command of the whole tree, in its order', () => {
    expect(COMMANDS.flatMap(([n]) => n)).toEqual(buildProgram().commands.map((c) => c.name()));
  });

  it.each(COMMANDS.flatMap(([names]) => names.map((n) => [n, names] as const)))('ebpfnet %s: only its module\'s commands, with the help texts of the whole tree', async (name, names) => {
    const p = await programFor(['node', 'ebpfnet', name]);
    expect(p.commands.map((c) => c.name())).toEqual(names);
    const full = buildProgram();
    for (const c of p.commands) {
      const f = full.commands.find((x) => x.name() === c.name())!;
      expect(c.helpInformation()).toBe(f.helpInformation());
      expect(c.commands.map((x) => x.helpInformation())).toEqual(f.commands.map((x) => x.helpInformation()));
    }
  });

  it('an alias loads its command: ebpfnet k8s is kubernetes', async () => {
    const aliases = COMMANDS.flatMap(([names, , a]) => (a ?? []).map((x) => [x, names] as const));
    expect(aliases.length).toBeGreaterThan(0);
    for (const [alias, names] of aliases) {
      const p = await programFor(['node', 'ebpfnet', alias]);
      expect(p.commands.map((c) => c.name())).toEqual(names);
      expect(p.commands.flatMap((c) => c.aliases())).toContain(alias);
    }
  });

  it('no command, an option first or an unknown name: the whole tree', async () => {
    for (const argv of [['node', 'ebpfnet'], ['node', 'ebpfnet', '--help'], ['node', 'ebpfnet', 'frobnicate']]) {
      expect((await programFor(argv)).commands.map((c) => c.name())).toEqual(COMMANDS.flatMap(([n]) => n));
    }
  });
});

describe('lb addresses: the IPv4 reader', () => {
  it('accepts exactly what node:net isIPv4 accepts, and keeps the text', () => {
    const octet = fc.oneof(fc.integer({ min: 0, max: 300 }).map(String), fc.stringMatching(/^[0-9]{1,4}$/), fc.constantFrom('', 'a', '-1', '+1', ' 1'));
    const dotted = fc.array(octet, { minLength: 1, maxLength: 6 }).map((xs) => xs.join('.'));
    fc.assert(
      fc.property(fc.oneof(dotted, fc.string()), (s) => {
        const ip = parseIp(s);
        if (isIPv4(s)) {
          expect(ip).toMatchObject({ family: 4, text: s });
          expect([...ip!.bytes]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, ...s.split('.').map(Number)]);
        } else expect(ip === null || isIPv6(s)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('lb names: the text as written when it is canonical, else made canonical', () => {
  it.each([
    ['10.96.0.10:80/tcp', '10.96.0.10:80/tcp'],
    ['10.96.0.10:080/tcp', '10.96.0.10:80/tcp'],
    ['10.96.0.10:80/TCP', '10.96.0.10:80/tcp'],
    ['[10.96.0.10]:80/tcp', '10.96.0.10:80/tcp'],
    ['[::ffff:10.96.0.10]:80/udp', '10.96.0.10:80/udp'],
    [' 10.96.0.10:80/udp ', '10.96.0.10:80/udp'],
  ])('%s is %s', async (text, name) => {
    const { parseServiceAddr, parseBackend } = await import('../../src/lb/model.js');
    expect(parseServiceAddr(text).name).toBe(name);
    const b = name.replace(/\/(tcp|udp)$/, '');
    expect(parseBackend(text.replace(/\/(tcp|udp|TCP)\s*$/i, '')).name).toBe(b);
  });
});

describe('lb list order', () => {
  it('IPv4 services by v4Order: the numeric collator order of their names', async () => {
    const { v4Order, svcKey, keyName } = await import('../../src/lb/plan.js');
    const { parseServiceAddr } = await import('../../src/lb/model.js');
    const collator = new Intl.Collator('en', { numeric: true });
    const svc = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 65535 }), fc.constantFrom('tcp', 'udp'));
    fc.assert(
      fc.property(fc.uniqueArray(svc, { minLength: 2, maxLength: 30, selector: (t) => t.join() }), (list) => {
        const keys = list.map(([a, b, c, d, port, proto]) => svcKey(parseServiceAddr(`${a}.${b}.${c}.${d}:${port}/${proto}`), 0));
        const byNumber = [...keys].sort((x, y) => v4Order(x)! - v4Order(y)!).map(keyName);
        const byName = keys.map(keyName).sort((x, y) => collator.compare(x, y));
        expect(byNumber).toEqual(byName);
      }),
      { numRuns: 300 },
    );
    expect(v4Order(svcKey(parseServiceAddr('[fd00::1]:80/tcp'), 0))).toBeNull();
  });
});
