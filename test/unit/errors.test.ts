// SPDX-License-Identifier: Apache-2.0
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageDir } from '../../src/loader/paths.js';
import { ERROR_CODES, EbpfnetError, VerifierError, errnoName, kernelError, parseVerifierStats, verifierComplaint } from '../../src/errors.js';

const LOG = `func#0 @0
0: R1=ctx() R10=fp0
; unsigned char *data = (void *)(long)ctx->data; @ reject.bpf.c:11
0: (61) r1 = *(u32 *)(r1 +0)          ; R1=pkt(r=0)
1: (71) r1 = *(u8 *)(r1 +20)
invalid access to packet, off=20 size=1, R1(id=0,off=20,r=0)
R1 offset is outside of the packet
verification time 55 usec
stack depth 8+16
processed 2 insns (limit 1000000) max_states_per_insn 1 total_states 3 peak_states 2 mark_read 0
`;

describe('errors', () => {
  it('names errno values, including the kernel-only ENOTSUPP', () => {
    expect(errnoName(1)).toBe('EPERM');
    expect(errnoName(-2)).toBe('ENOENT');
    expect(errnoName(524)).toBe('ENOTSUPP');
    expect(errnoName(9999)).toBe('errno 9999');
  });

  it('turns errno into a code and a hint a person can act on', () => {
    const e = kernelError('load filter', 1);
    expect(e.code).toBe('EBPFNET_PERMISSION');
    expect(e.message).toBe('load filter: EPERM; run as root (needs CAP_BPF and CAP_NET_ADMIN)');
    expect(kernelError('update map x', 7).code).toBe('EBPFNET_MAP_FULL');
    expect(kernelError('attach', 16).code).toBe('EBPFNET_BUSY');
    expect(kernelError('x', 5).code).toBe('EBPFNET_KERNEL');
  });

  it('messages are lower-case `op: detail` and chain the cause', () => {
    const cause = new Error('inner');
    const e = new EbpfnetError('EBPFNET_USAGE', 'parse rule', 'port 99999 is out of range', { hint: 'ports are 1-65535', cause });
    expect(e.message).toBe('parse rule: port 99999 is out of range; ports are 1-65535');
    expect(e.cause).toBe(cause);
  });

  it('every code has an exit status and an HTTP status', () => {
    for (const [code, v] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^EBPFNET_[A-Z_]+$/);
      expect([1, 2]).toContain(v.exit);
      expect(v.http).toBeGreaterThanOrEqual(400);
    }
  });

  it('parses verifier statistics, adding subprogram stack depths', () => {
    expect(parseVerifierStats(LOG)).toEqual({ insns: 2, states: 3, peakStates: 2, stackDepth: 24 });
    expect(parseVerifierStats('nothing here')).toBeNull();
  });

  it('a VerifierError names the failing instruction and the complaint, and keeps the log', () => {
    expect(verifierComplaint(LOG)).toEqual({ insn: 1, text: 'invalid access to packet, off=20 size=1, R1(id=0,off=20,r=0); R1 offset is outside of the packet' });
    const e = new VerifierError('reject_xdp', 13, LOG);
    expect(e.message).toMatch(/^load program reject_xdp: the verifier rejected it: invalid access to packet.*\(at instruction 1\) \(EACCES\)/);
    expect(e.log).toBe(LOG);
    expect(e.stats?.insns).toBe(2);
    expect(e.code).toBe('EBPFNET_VERIFIER');
  });
});

describe("the README's error table", () => {
  it('lists every code of src/errors.ts, in its order, with its exit and HTTP status', () => {
    const readme = readFileSync(join(packageDir(), 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Errors\n'));
    expect(section.length, 'the README has an Errors section').toBeLessThan(readme.length);
    const rows = [...section.slice(0, section.indexOf('\n## ', 1)).matchAll(/^\| (EBPFNET_[A-Z_]+) \| (\d) \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2]), Number(m[3])]);
    expect(rows).toEqual(Object.entries(ERROR_CODES).map(([code, v]) => [code, v.exit, v.http]));
  });
});
