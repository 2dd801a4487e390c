// SPDX-License-Identifier: Apache-2.0
// What `ebpfnet trace` prints: kernel records decoded, table rows, JSON Lines, the end summary and
// the metrics, all from crafted records (the kernel test checks them against real calls).
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import * as G from '../../src/gen/trace.js';
import { clockTime, decodeEvent, displayPath, isoTime, jsonLine, octalMode, printable, resultName, tableHeader, tableRow, type TraceEvent } from '../../src/trace/event.js';
import { TraceSummary } from '../../src/trace/summary.js';
import { traceMetrics } from '../../src/metrics/trace.js';
import { traceRecord, type RecordOverrides } from '../helpers/trace-records.js';

const bytes = (s: string | Buffer, size: number): Uint8Array => {
  const out = new Uint8Array(size);
  out.set(typeof s === 'string' ? Buffer.from(s) : s);
  return out;
};

/** A tr_event as the kernel would submit it: the generated codec's bytes, at an offset as in the ring. */
function record(over: RecordOverrides = {}): Buffer {
  return G.TrEvent.encode(traceRecord(over), Buffer.alloc(8 + G.TrEvent.size, 0xee), 8);
}

const decode = (b: Buffer, offsetUs: number): TraceEvent => decodeEvent(b, 8, offsetUs);

// 2026-01-02T03:04:05.678901Z in µs, minus the record's 1 s of monotonic time
const WALL = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
const OFFSET = WALL * 1000 + 901 - 1_000_000;

describe('trace: decoding', () => {
  it('turns a record into an event: wall-clock time, names, octal mode, errno name', () => {
    const e = decode(record({ ret: -17, syscall: G.TR_SYS_MKDIRAT }), OFFSET);
    expect(e).toEqual({
      timeUs: WALL * 1000 + 901,
      syscall: 'mkdirat',
      via: 'syscall',
      pid: 4242,
      nsPid: 4242,
      tid: 4243,
      uid: 1000,
      cgroupId: 1,
      cgroup: null,
      comm: 'mkdir',
      path: '/tmp/x',
      pathHex: null,
      truncated: false,
      dirfd: null,
      mode: 0o755,
      ret: -17,
      result: 'EEXIST',
      latencyNs: 12345,
    });
  });

  it('keeps the dirfd only when the kernel marked the path as relative to it', () => {
    expect(decode(record({ syscall: G.TR_SYS_MKDIRAT, dirfd: 3, flags: G.TR_F_DIRFD, pathText: 'sub' }), 0).dirfd).toBe(3);
    expect(decode(record({ syscall: G.TR_SYS_MKDIRAT, dirfd: 3, flags: 0, pathText: '/abs' }), 0).dirfd).toBeNull();
  });

  it('an unreadable path is null, a long one is flagged, bytes that are not UTF-8 come with their hex', () => {
    expect(decode(record({ flags: G.TR_F_FAULT, pathText: '' }), 0).path).toBeNull();
    const long = decode(record({ flags: G.TR_F_TRUNCATED, pathText: 'a'.repeat(255) }), 0);
    expect(long.truncated).toBe(true);
    expect(long.path).toHaveLength(255);
    const odd = decode(record({ pathText: Buffer.from([0x2f, 0x74, 0xff, 0x0a]) }), 0);
    expect(odd.path).toBe('/t\ufffd\n');
    expect(odd.pathHex).toBe('2f74ff0a');
  });

  it('names results: 0, errno names, unknown errnos', () => {
    expect(resultName(0)).toBe('0');
    expect(resultName(-2)).toBe('ENOENT');
    expect(resultName(-13)).toBe('EACCES');
    expect(resultName(-4000)).toBe('errno 4000');
  });
});

describe('trace: presentation', () => {
  const e = (over: Partial<TraceEvent> = {}): TraceEvent => ({ ...decode(record(), OFFSET), ...over });

  it('formats times and modes', () => {
    expect(isoTime(WALL * 1000 + 901)).toBe('2026-01-02T03:04:05.678901Z');
    expect(octalMode(0o755)).toBe('0755');
    expect(octalMode(0o1777)).toBe('01777');
    expect(octalMode(0)).toBe('0000');
    const d = new Date(WALL);
    expect(clockTime(WALL * 1000)).toBe(`${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}:05.678`);
  });

  it('one JSON object per line, keys in a fixed order', () => {
    const line = jsonLine(e());
    expect(line).not.toContain('\n');
    expect(JSON.parse(line)).toEqual({
      v: 1,
      time: '2026-01-02T03:04:05.678901Z',
      syscall: 'mkdir',
      via: 'syscall',
      pid: 4242,
      ns_pid: 4242,
      tid: 4243,
      uid: 1000,
      cgroup_id: 1,
      cgroup: null,
      comm: 'mkdir',
      path: '/tmp/x',
      dirfd: null,
      mode: '0755',
      ret: 0,
      result: '0',
      latency_ns: 12345,
      truncated: false,
    });
    expect(Object.keys(JSON.parse(line))[0]).toBe('v');
    expect(JSON.parse(jsonLine(e({ path: '/t\ufffd', pathHex: '2f74ff' }))).path_hex).toBe('2f74ff');
  });

  it('table rows line up under the header; PATH is last', () => {
    const header = tableHeader({ timestamps: false });
    const row = tableRow(e({ ret: -17, result: 'EEXIST' }), { timestamps: false });
    expect(header).toMatch(/^PID\s+TID\s+UID\s+COMM\s+SYSCALL\s+MODE\s+RESULT\s+LAT\(us\) PATH$/);
    expect(row).toMatch(/^4242\s+4243\s+1000\s+mkdir\s+mkdir\s+0755\s+EEXIST\s+12\.3 \/tmp\/x$/);
    for (const col of ['TID', 'UID', 'COMM', 'SYSCALL', 'MODE', 'RESULT']) {
      const at = header.indexOf(col);
      expect(row[at - 1], `${col} column`).toBe(' ');
      expect(row[at], `${col} column`).not.toBe(' ');
    }
    expect(row.indexOf('/tmp/x')).toBe(header.indexOf('PATH'));
    expect(tableHeader({ timestamps: true })).toMatch(/^TIME\s+PID/);
    expect(tableRow(e(), { timestamps: true })).toMatch(/^\d\d:\d\d:05\.678 4242 /);
  });

  it('marks paths relative to a dirfd, truncated and unreadable paths, and escapes control characters', () => {
    expect(displayPath(e({ dirfd: 3, path: 'sub' }))).toBe('<fd 3>/sub');
    expect(displayPath(e({ truncated: true, path: 'aaa' }))).toBe('aaa...');
    expect(displayPath(e({ path: null }))).toBe('<unreadable>');
    expect(displayPath(e({ path: 'a\nb' }))).toBe('a\\x0ab');
    expect(printable('/t\ufffd', '2f74ff')).toBe('/t\\xff');
  });
});

describe('trace: summary', () => {
  it('counts events, failures and top commands; reports what was lost', () => {
    const s = new TraceSummary();
    for (let i = 0; i < 3; i++) s.add('mkdir', 'mkdir', 0);
    s.add('mkdir', 'mkdir', -17);
    s.add('python3', 'mkdirat', -13);
    s.add('python3', 'mkdirat', 0);
    s.skip();
    expect(s.seen).toBe(6);
    expect(s.top()).toEqual([
      { comm: 'mkdir', events: 4, failed: 1 },
      { comm: 'python3', events: 2, failed: 1 },
    ]);
    expect(s.format({ lost: 0n, untracked: 0n }, 4200, ['mkdir', 'mkdirat'])).toBe(
      [
        'summary: 6 events seen, 0 lost in 4.2 s (mkdir 4, mkdirat 2; 2 failed)',
        'note: 1 more from other commands hidden by --name',
        'top commands: mkdir 4 (1 failed), python3 2 (1 failed)',
      ].join('\n'),
    );
    const lossy = new TraceSummary().format({ lost: 5n, untracked: 2n }, 1000, ['mkdir']);
    expect(lossy).toMatch(/^summary: 0 events seen, 7 lost in 1\.0 s/);
    expect(lossy).toMatch(/2 of the lost were not tracked: their thread shared a slot/);
    expect(lossy).toMatch(/raise --buffer-size/);
    expect(lossy).toMatch(/top commands: none$/);
  });
});

describe('trace: metrics', () => {
  it('counts events by syscall and result, and lost events from the kernel count', async () => {
    const registry = new Registry();
    let lost = 0n;
    const m = traceMetrics(registry, ['mkdir', 'mkdirat'], () => lost);
    m.observe('mkdir', '0');
    m.observe('mkdir', 'EEXIST');
    m.observe('mkdir', 'EEXIST');
    lost = 3n;
    let text = await registry.metrics();
    expect(text).toContain('ebpfnet_trace_events_total{syscall="mkdir",result="0"} 1');
    expect(text).toContain('ebpfnet_trace_events_total{syscall="mkdir",result="EEXIST"} 2');
    expect(text).toContain('ebpfnet_trace_events_total{syscall="mkdirat",result="0"} 0');
    expect(text).toContain('ebpfnet_trace_events_lost_total 3');
    lost = 5n;
    m.observe('mkdir', 'EEXIST');
    text = await registry.metrics();
    expect(text).toContain('ebpfnet_trace_events_lost_total 5');
    // counts handed over at one scrape are not counted again at the next
    expect(text).toContain('ebpfnet_trace_events_total{syscall="mkdir",result="EEXIST"} 3');
    expect(text).toContain('ebpfnet_trace_events_total{syscall="mkdir",result="0"} 1');
    expect(text).toMatch(/# TYPE ebpfnet_trace_events_lost_total counter/);
  });
});
