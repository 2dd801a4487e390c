// SPDX-License-Identifier: Apache-2.0
// The JSON Lines schema of `ebpfnet trace -o json`: it is valid for what the formatter writes in
// every case, strict about what it refuses, and agrees with the code on version and syscalls.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as G from '../../src/gen/trace.js';
import { packageDir } from '../../src/loader/paths.js';
import { SCHEMA_VERSION, decodeEvent, jsonLine } from '../../src/trace/event.js';
import { SYSCALLS } from '../../src/trace/syscalls.js';
import { validate } from '../helpers/json-schema.js';

const traceSchema = (): Record<string, unknown> => JSON.parse(readFileSync(join(packageDir(), 'src', 'trace', 'event.schema.json'), 'utf8'));

function line(over: Partial<G.TrEvent> = {}, path: string | Buffer = '/tmp/x'): Record<string, unknown> {
  const p = new Uint8Array(G.TR_PATH_MAX);
  p.set(typeof path === 'string' ? Buffer.from(path) : path);
  const c = new Uint8Array(G.TR_COMM_LEN);
  c.set(Buffer.from('mkdir'));
  const r: G.TrEvent = { ts_ns: 5n, latency_ns: 100n, pid: 1, tid: 1, uid: 0, ret: 0, mode: 0o777, dirfd: G.TR_AT_FDCWD, syscall: G.TR_SYS_MKDIR, flags: 0, ns_pid: 1, cgroup_id: 1n, via: G.TR_VIA_SYSCALL, comm: c, path: p, ...over };
  return JSON.parse(jsonLine(decodeEvent(G.TrEvent.encode(r), 0, 1_700_000_000_000_000)));
}

describe('trace: JSON schema', () => {
  const schema = traceSchema();

  it('is version SCHEMA_VERSION and lists every syscall the tracer knows', () => {
    expect((schema.properties as Record<string, { const?: number }>).v.const).toBe(SCHEMA_VERSION);
    expect((schema.properties as Record<string, { enum?: string[] }>).syscall.enum).toEqual(SYSCALLS.map((s) => s.name));
  });

  it.each([
    ['a successful mkdir', line()],
    ['a failed mkdirat relative to a dirfd', line({ syscall: G.TR_SYS_MKDIRAT, ret: -17, dirfd: 7, flags: G.TR_F_DIRFD }, 'sub')],
    ['an unreadable path', line({ ret: -14, flags: G.TR_F_FAULT }, '')],
    ['a truncated path', line({ flags: G.TR_F_TRUNCATED }, 'x'.repeat(255))],
    ['a path that is not UTF-8', line({}, Buffer.from([0x2f, 0xff]))],
    ['a mode with setgid and sticky bits', line({ mode: 0o3777 })],
  ])('accepts %s', (_what, obj) => {
    expect(validate(schema, obj)).toEqual([]);
  });

  it.each([
    ['a missing field', (o: Record<string, unknown>) => delete o.result, /\$: must have required property 'result'/],
    ['an unknown field', (o: Record<string, unknown>) => (o.extra = 1), /\$: must NOT have additional properties extra/],
    ['another version', (o: Record<string, unknown>) => (o.v = 2), /\$\.v/],
    ['a numeric mode', (o: Record<string, unknown>) => (o.mode = 493), /\$\.mode: must be string/],
    ['a pid of 0', (o: Record<string, unknown>) => (o.pid = 0), /\$\.pid: must be >= 1/],
    ['a time without microseconds', (o: Record<string, unknown>) => (o.time = '2026-01-01T00:00:00Z'), /\$\.time/],
    ['a result in lower case', (o: Record<string, unknown>) => (o.result = 'eexist'), /\$\.result/],
    ['a fractional latency', (o: Record<string, unknown>) => (o.latency_ns = 1.5), /\$\.latency_ns: must be integer/],
    ['a comm longer than the kernel keeps', (o: Record<string, unknown>) => (o.comm = 'x'.repeat(16)), /\$\.comm: must NOT have more than 15 characters/],
  ])('refuses %s', (_what, mutate, msg) => {
    const o = line();
    mutate(o);
    expect(validate(schema, o).join('\n')).toMatch(msg);
  });

  it('the checker refuses keywords it does not enforce', () => {
    expect(() => validate({ type: 'object', maxDigits: 3 }, {})).toThrow(/unknown keyword: "maxDigits"/);
  });
});
