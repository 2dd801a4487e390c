// SPDX-License-Identifier: Apache-2.0
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EbpfnetError } from '../../src/errors.js';
import { handleError, table } from '../../src/cli/present.js';
import { buildProgram } from '../../src/cli/program.js';

describe('cli', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = 0;
  });

  it('an unknown command is a usage error: exit 2', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const p = buildProgram();
    p.configureOutput({ writeErr: () => {} });
    await p.parseAsync(['node', 'ebpfnet', 'frobnicate']).catch(handleError);
    expect(process.exitCode).toBe(2);
    err.mockRestore();
  });

  it('an expected error prints one line without a stack and maps its code to the exit status', () => {
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => (lines.push(String(s)), true));
    handleError(new EbpfnetError('EBPFNET_USAGE', 'parse rule', "unknown protocol 'foo'", { hint: 'use tcp, udp, sctp, icmp or icmpv6' }));
    expect(lines).toEqual(["ebpfnet: parse rule: unknown protocol 'foo'; use tcp, udp, sctp, icmp or icmpv6\n"]);
    expect(process.exitCode).toBe(2);
    lines.length = 0;
    handleError(new EbpfnetError('EBPFNET_PERMISSION', 'verify', 'needs root'));
    expect(process.exitCode).toBe(1);
  });

  it('lists doctor and verify', () => {
    expect(buildProgram().commands.map((c) => c.name())).toEqual(expect.arrayContaining(['doctor', 'verify']));
  });

  it('tables align columns and show missing values as -', () => {
    expect(table(['a', 'bb'], [['xxx', null], ['y', 2]])).toBe('a    bb\nxxx  -\ny    2');
  });
});
