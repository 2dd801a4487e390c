// SPDX-License-Identifier: Apache-2.0
// The reader's fast renderer (src/trace/render.ts) against the reference formatters (jsonLine and
// tableRow over decodeEvent, src/trace/event.ts): byte for byte the same output for every kind of
// record, including the ones the fast path hands to the slow one, and for runs of repeated records
// where it reuses what it rendered before.
import { describe, expect, it } from 'vitest';
import * as G from '../../src/gen/trace.js';
import { decodeEvent, jsonLine, tableRow, type TableOptions } from '../../src/trace/event.js';
import { RecordReader, Renderer, type RenderFormat } from '../../src/trace/render.js';
import { fixedBytes as bytes, traceRecord, type RecordOverrides } from '../helpers/trace-records.js';

type Rec = RecordOverrides;

const BASE_TS = 5_000_000_123_456n;
const rec = (over: Rec = {}): G.TrEvent => traceRecord(over, BASE_TS);

/** Records laid out as in the ring: an 8-byte header before each, records 8-byte aligned. */
function ring(records: G.TrEvent[], misalign = 0): { b: Buffer; offsets: number[] } {
  const stride = 8 + G.TrEvent.size;
  const b = Buffer.alloc(misalign + records.length * stride, 0xa5);
  const offsets = records.map((r, i) => {
    const o = misalign + i * stride + 8;
    G.TrEvent.encode(r, b, o);
    return o;
  });
  return { b, offsets };
}

const OFFSET_US = 1_700_000_000_000_000 - 5_000_000_123;

function both(records: G.TrEvent[], format: RenderFormat, table: TableOptions, misalign = 0): { fast: string; reference: string; slow: number } {
  const { b, offsets } = ring(records, misalign);
  const renderer = new Renderer(format, table, OFFSET_US, 4096);
  const reader = new RecordReader();
  const chunks: string[] = [];
  offsets.forEach((o, i) => {
    renderer.record(reader.select(b, o));
    // take() now and then, as the CLI does once per poll
    if (i % 7 === 6) chunks.push(renderer.take().toString('utf8'));
  });
  chunks.push(renderer.take().toString('utf8'));
  const reference = offsets.map((o) => `${format === 'json' ? jsonLine(decodeEvent(b, o, OFFSET_US)) : tableRow(decodeEvent(b, o, OFFSET_US), table)}\n`).join('');
  return { fast: chunks.join(''), reference, slow: renderer.slowRecords };
}

const CORPUS: Array<[string, Rec]> = [
  ['a plain mkdir', {}],
  ['EEXIST', { ret: -17 }],
  ['EACCES from mkdirat', { ret: -13, syscall: G.TR_SYS_MKDIRAT }],
  ['an errno without a name', { ret: -4000 }],
  ['a positive return', { ret: 5 }],
  ['a path relative to a dirfd', { syscall: G.TR_SYS_MKDIRAT, dirfd: 7, flags: G.TR_F_DIRFD, pathText: 'sub/dir' }],
  ['a negative dirfd marked relative', { syscall: G.TR_SYS_MKDIRAT, dirfd: -5, flags: G.TR_F_DIRFD, pathText: 'x' }],
  ['a truncated path', { flags: G.TR_F_TRUNCATED, pathText: 'a'.repeat(255) }],
  ['a path that fills the field without a NUL', { flags: G.TR_F_TRUNCATED, pathText: 'b'.repeat(256) }],
  ['an unreadable path', { flags: G.TR_F_FAULT, pathText: '', ret: -14 }],
  ['a path with quotes and backslashes', { pathText: '/tmp/"a"\\b' }],
  ['a path with a newline', { pathText: '/tmp/a\nb' }],
  ['a path in UTF-8', { pathText: '/tmp/été' }],
  ['a path that is not UTF-8', { pathText: Buffer.from([0x2f, 0x74, 0xff, 0xfe]) }],
  ['a path that spells U+FFFD in valid UTF-8', { pathText: '/tmp/\ufffd' }],
  ['an empty path', { pathText: '', ret: -2 }],
  ['a command name with a space', { commText: 'node (vitest)' }],
  ['a command name of 15 characters', { commText: 'abcdefghijklmno' }],
  ['a command name that is not ASCII', { commText: 'mkdır' }],
  ['a command name with a quote', { commText: 'a"b' }],
  ['mode 0', { mode: 0 }],
  ['mode 07777', { mode: 0o7777 }],
  ['a mode with every bit set', { mode: 0xffffffff }],
  ['the largest ids', { pid: 4194304, tid: 4194304, uid: 4294967294 }],
  ['a latency of 0', { latency_ns: 0n }],
  ['a latency of 49 ns', { latency_ns: 49n }],
  ['a latency of 150 ns (rounds up)', { latency_ns: 150n }],
  ['a latency of 12350 ns (half way)', { latency_ns: 12_350n }],
  ['a latency of 2^40 ns', { latency_ns: 1n << 40n }],
  ['a latency beyond 2^31 µs', { latency_ns: 3_000_000_000_000n }],
  ['a time on a whole second', { ts_ns: BASE_TS + 876_544n * 1000n }],
  ['a time just before the next second', { ts_ns: BASE_TS + 876_543n * 1000n }],
  ['an unknown syscall id', { syscall: 99 }],
];

/** Runs of the same call with only time and latency changing, then each field changing once. */
function repeats(): G.TrEvent[] {
  const out: G.TrEvent[] = [];
  for (let i = 0; i < 5; i++) out.push(rec({ ts_ns: BASE_TS + BigInt(i * 3_000), latency_ns: BigInt(1000 + i) }));
  const variants: Rec[] = [
    { ret: -17 },
    { pid: 1 },
    { tid: 2 },
    { uid: 3 },
    { mode: 0o700 },
    { pathText: '/tmp/y' },
    { pathText: '/tmp/x2' },
    { commText: 'mkdi' },
    { syscall: G.TR_SYS_MKDIRAT, dirfd: 4, flags: G.TR_F_DIRFD },
    { flags: G.TR_F_TRUNCATED },
    { pathText: '/tmp/"q"' },
  ];
  for (const v of variants) for (let i = 0; i < 3; i++) out.push(rec({ ...v, ts_ns: BASE_TS + BigInt(out.length * 1_111_111), latency_ns: BigInt(out.length) }));
  // a record whose path bytes after the NUL differ (leftovers in a reused ring slot) renders the same
  const dirty = rec({ pathText: Buffer.concat([Buffer.from('/tmp/x\0'), Buffer.alloc(20, 0x41)]) });
  out.push(rec(), dirty, rec());
  return out;
}

const cases: Array<[RenderFormat, TableOptions]> = [
  ['json', { timestamps: false }],
  ['table', { timestamps: false }],
  ['table', { timestamps: true }],
];

describe('trace: fast renderer = reference formatters', () => {
  for (const [format, table] of cases) {
    const label = `${format}${table.timestamps ? ' -T' : ''}`;

    it.each(CORPUS)(`${label}: %s`, (_what, over) => {
      const { fast, reference } = both([rec(over)], format, table);
      expect(fast).toBe(reference);
    });

    it(`${label}: the whole corpus in one stream, and runs of repeated records`, () => {
      const all = [...CORPUS.map(([, o]) => rec(o)), ...repeats()];
      const { fast, reference } = both(all, format, table);
      expect(fast.split('\n')).toEqual(reference.split('\n'));
    });

    it(`${label}: records that are not 4-byte aligned in their buffer`, () => {
      const all = [...CORPUS.map(([, o]) => rec(o)), ...repeats()];
      const { fast, reference } = both(all, format, table, 2);
      expect(fast).toBe(reference);
    });
  }

  it('takes the fast path for everyday records and the slow one only for what needs it', () => {
    const everyday = CORPUS.filter(([what]) => !/unreadable|quote|newline|UTF-8|not ASCII|U\+FFFD/.test(what)).map(([, o]) => rec(o));
    for (const [format, table] of cases) {
      expect(both(everyday, format, table).slow, `${format}`).toBe(0);
      expect(both([rec({ pathText: '/tmp/"q"' })], format, table).slow).toBe(1);
      expect(both([rec({ flags: G.TR_F_FAULT })], format, table).slow).toBe(1);
    }
  });

  it('grows its buffer for a long run between takes', () => {
    const many = Array.from({ length: 500 }, (_, i) => rec({ pathText: `/tmp/${'d'.repeat(i % 200)}`, ts_ns: BASE_TS + BigInt(i) * 1000n }));
    const { fast, reference } = both(many, 'json', { timestamps: false });
    expect(fast).toBe(reference);
  });

  it('reads command names once per pid and again when they change', () => {
    const { b, offsets } = ring([rec({ commText: 'one' }), rec({ commText: 'one' }), rec({ commText: 'two' }), rec({ pid: 7, commText: 'one' })]);
    const r = new RecordReader();
    expect(offsets.map((o) => r.select(b, o).comm())).toEqual(['one', 'one', 'two', 'one']);
  });
});
