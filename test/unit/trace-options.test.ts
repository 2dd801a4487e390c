// SPDX-License-Identifier: Apache-2.0
// `ebpfnet trace` options: what a user types becomes a checked plan, and every mistake is one
// EBPFNET_USAGE error (exit 2) raised before anything is loaded. No root needed.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EbpfnetError } from '../../src/errors.js';
import * as G from '../../src/gen/trace.js';
import { handleError } from '../../src/cli/present.js';
import { buildProgram } from '../../src/cli/program.js';
import { DEFAULT_BUFFER_SIZE, nameMatcher, parseBufferSize, parseTraceOptions, passwdUsers } from '../../src/trace/options.js';
import { SYSCALLS, resolveSyscalls, syscallName, traceTargets } from '../../src/trace/syscalls.js';

const users = () => new Map([['nobody', 65534], ['alice', 1000]]);
const parse = (target: string, raw: Record<string, unknown> = {}) => parseTraceOptions(target, raw, { users });

function usageError(fn: () => unknown): EbpfnetError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EbpfnetError);
    expect((e as EbpfnetError).code).toBe('EBPFNET_USAGE');
    expect((e as EbpfnetError).message).toMatch(/^trace: /);
    expect((e as EbpfnetError).message).not.toContain('\n');
    return e as EbpfnetError;
  }
  throw new Error('expected a usage error');
}

describe('trace: syscalls', () => {
  it('mkdir means mkdir and mkdirat; mkdirat alone is one syscall', () => {
    expect(resolveSyscalls('mkdir').map((s) => s.name)).toEqual(['mkdir', 'mkdirat']);
    expect(resolveSyscalls('mkdirat').map((s) => s.name)).toEqual(['mkdirat']);
    expect(traceTargets()).toEqual(['mkdir', 'mkdirat']);
  });

  it('every row has its own id, an entry program from maps/, and a name for events', () => {
    expect(new Set(SYSCALLS.map((s) => s.id)).size).toBe(SYSCALLS.length);
    const progs = G.LAYOUT.programs.map((p) => p.name) as string[];
    for (const s of SYSCALLS) {
      expect(progs).toContain(s.enter.name);
      expect(syscallName(s.id)).toBe(s.name);
    }
    expect(syscallName(99)).toBe('syscall 99');
  });

  it('an unknown syscall names what is supported', () => {
    expect(usageError(() => resolveSyscalls('mkdirx')).message).toBe("trace: unknown syscall 'mkdirx'; this tracer knows mkdir (mkdir, mkdirat)");
  });
});

describe('trace: options', () => {
  it('defaults: everything, as a table, 16 MiB ring, until Ctrl-C', () => {
    const p = parse('mkdir');
    expect(p).toMatchObject({ pid: null, uid: null, name: null, failedOnly: false, cgroup: null, durationMs: null, output: 'table', timestamps: false });
    expect(p.bufferSize).toBe(DEFAULT_BUFFER_SIZE);
    expect(DEFAULT_BUFFER_SIZE).toBe(G.TR_EVENTS.maxEntries);
  });

  it('parses each option', () => {
    const p = parse('mkdir', { pid: '1234', uid: '0', name: 'mk', failed: true, cgroup: 'system.slice', duration: '2.5', output: 'JSON', timestamp: true, bufferSize: '64M' });
    expect(p).toMatchObject({ pid: 1234, uid: 0, name: 'mk', failedOnly: true, cgroup: 'system.slice', durationMs: 2500, output: 'json', timestamps: true, bufferSize: 64 << 20 });
  });

  it('takes a user name for --uid', () => {
    expect(parse('mkdir', { uid: 'nobody' }).uid).toBe(65534);
    expect(passwdUsers('root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\n# comment\n')).toEqual(
      new Map([['root', 0], ['nobody', 65534]]),
    );
  });

  it.each([
    ['-p abc', { pid: 'abc' }, /--pid 'abc' is not a process id/],
    ['-p 0', { pid: '0' }, /--pid 0 is out of range/],
    ['-p -5', { pid: '-5' }, /--pid '-5' is not a process id/],
    ['-p 1.5', { pid: '1.5' }, /not a process id/],
    ['-p beyond PID_MAX', { pid: '5000000' }, /out of range/],
    ['-u -1', { uid: '-1' }, /--uid '-1' is not a user id/],
    ['-u 4294967295', { uid: '4294967295' }, /out of range/],
    ['-u for an unknown user', { uid: 'mallory' }, /no user named 'mallory'/],
    ['-d -1', { duration: '-1' }, /--duration -1 must be more than 0 seconds/],
    ['-d 0', { duration: '0' }, /must be more than 0/],
    ['-d abc', { duration: 'abc' }, /--duration 'abc' is not a number of seconds/],
    ['-d beyond a timer', { duration: '99999999' }, /too long/],
    ['-o xml', { output: 'xml' }, /--output 'xml' is not a format; use -o table or -o json/],
    ['-n with an empty name', { name: '' }, /--name is empty/],
    ['-n with a path', { name: '/bin/mkdir' }, /cannot be a command name/],
    ['--cgroup empty', { cgroup: ' ' }, /--cgroup is empty/],
    ['-b 3M', { bufferSize: '3M' }, /not a power of two/],
    ['-b 2K', { bufferSize: '2K' }, /not a power of two between 4K and 1G/],
    ['-b lots', { bufferSize: 'lots' }, /is not a size/],
  ])('refuses %s', (_what, raw, msg) => {
    expect(usageError(() => parse('mkdir', raw)).message).toMatch(msg);
  });

  it('buffer sizes take K, M and G', () => {
    expect(parseBufferSize('4096')).toBe(4096);
    expect(parseBufferSize('512K')).toBe(512 * 1024);
    expect(parseBufferSize('16M')).toBe(16 << 20);
    expect(parseBufferSize('1g')).toBe(1 << 30);
    expect(parseBufferSize('8MiB')).toBe(8 << 20);
  });

  it('-n matches part of the command name, and a long name by the 15 characters the kernel keeps', () => {
    expect(nameMatcher(null)('anything')).toBe(true);
    const m = nameMatcher('mkd');
    expect(m('mkdir')).toBe(true);
    expect(m('python3')).toBe(false);
    expect(nameMatcher('my-long-server-name')('my-long-server-')).toBe(true);
  });
});

describe('trace: the command line', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = 0;
  });

  async function run(args: string[]): Promise<{ code: number | undefined; stderr: string; stdout: string }> {
    let stderr = '';
    let stdout = '';
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((stderr += String(s)), true));
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += String(s)), true));
    process.exitCode = 0;
    await buildProgram().parseAsync(['node', 'ebpfnet', 'trace', ...args]).catch(handleError);
    return { code: process.exitCode as number | undefined, stderr, stdout };
  }

  it.each([
    [['mkdirx'], "ebpfnet: trace: unknown syscall 'mkdirx'; this tracer knows mkdir (mkdir, mkdirat)\n"],
    [['mkdir', '-p', 'abc'], "ebpfnet: trace: --pid 'abc' is not a process id; give a positive integer, e.g. -p 1234\n"],
    [['mkdir', '-d', '-1'], 'ebpfnet: trace: --duration -1 must be more than 0 seconds; give a positive number, e.g. -d 10\n'],
    [['mkdir', '--frob'], "ebpfnet: trace: unknown option '--frob'; see ebpfnet trace --help\n"],
    [['mkdir', '-p'], "ebpfnet: trace: option '-p, --pid <pid>' argument missing; see ebpfnet trace --help\n"],
    [['mkdir', '--metrics', 'nope'], "ebpfnet: trace: --metrics 'nope' is not [ADDR:]PORT; for example 9100 or 127.0.0.1:9100\n"],
  ])('bad input %j: one line, exit 2, before any privilege check', async (args, line) => {
    const r = await run(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(line);
    expect(r.stdout).toBe('');
  });

  it('is registered with its options', () => {
    const trace = buildProgram().commands.find((c) => c.name() === 'trace');
    expect(trace).toBeDefined();
    const flags = trace!.options.map((o) => o.short ?? o.long);
    expect(flags).toEqual(expect.arrayContaining(['-p', '-u', '-n', '-x', '--cgroup', '-d', '-o', '-T', '-b', '--metrics']));
  });
});

describe('trace: which tracepoints this kernel has', () => {
  it('traces what has both an entry and an exit tracepoint, and names the rest (arm64 has no mkdir)', async () => {
    const { mkdtempSync, mkdirSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { coverage } = await import('../../src/trace/tracer.js');
    const fake = mkdtempSync(join(tmpdir(), 'ebpfnet-tracefs-'));
    try {
      for (const tp of ['sys_enter_mkdirat', 'sys_exit_mkdirat', 'sys_enter_mkdir']) mkdirSync(join(fake, 'events', 'syscalls', tp), { recursive: true });
      const c = coverage(resolveSyscalls('mkdir'), fake);
      expect(c.traced.map((s) => s.name)).toEqual(['mkdirat']);
      expect(c.missing.map((s) => s.name)).toEqual(['mkdir']);
      expect(coverage(resolveSyscalls('mkdir'), join(fake, 'nothing')).traced).toEqual([]);
    } finally {
      rmSync(fake, { recursive: true, force: true });
    }
  });
});
