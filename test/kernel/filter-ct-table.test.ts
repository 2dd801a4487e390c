// SPDX-License-Identifier: Apache-2.0
// The connection table's size and numbers under BPF_PROG_TEST_RUN (issue 15): a table of the
// smallest size overfilled through filter_egress, with the test clock: entries never pass the size,
// idle flows are evicted (inserts - expiries - resets - entries) and a busy one stays, an evicted
// flow's reply is judged by the rules (dropped under a default deny) and counted as a miss; expiries and resets
// are counted where the programs remove flows. A second case runs the full default size.
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { CT_DEFAULT_MAX, CT_MIN } from '../../src/filter/ct-table.js';
import { FilterDatapath } from '../../src/filter/datapath.js';
import { runHook } from '../../src/filter/fuzz.js';
import { buildPacket, parsePacket, reverse, TCP, type PacketSpec } from '../../src/filter/packet.js';
import { makePolicy } from '../../src/filter/policy.js';
import * as F from '../../src/gen/filter.js';
import { describeKernel } from '../helpers/kernel.js';

const S = 1_000_000_000n;
const T0 = 1_000n * S;

describeKernel('the connection table: size, evictions, expiries, resets, misses (BPF_PROG_TEST_RUN)', () => {
  let d: FilterDatapath;
  let ct: ReturnType<FilterDatapath['conntrack']>;
  let now = T0;
  beforeAll(() => {
    d = FilterDatapath.load('cttable', { ctMax: CT_MIN });
    ct = d.conntrack();
    d.apply(makePolicy({ default: 'deny', allow: ['tcp/22'] }));
  });
  afterAll(() => d?.close());
  beforeEach(() => {
    for (const k of [...ct.flows.keys()]) ct.flows.delete(k);
    for (let i = 0; i < F.FLT_CTS_SLOTS; i++) ct.stats.update(i, 0n);
    now = T0;
    ct.cfg.set(0, { ...ct.cfg.get(0), stateful: 1, now });
  });
  const later = (seconds: number): void => {
    now += BigInt(seconds) * S;
    ct.cfg.set(0, { ...ct.cfg.get(0), now });
  };
  const P = (text: string, more: Partial<PacketSpec> = {}): PacketSpec => ({ ...parsePacket(text), ...more });
  const out = (spec: PacketSpec): void => void expect(ct.egress.testRun({ data: buildPacket(spec) }).retval).toBe(0);
  const inbound = (spec: PacketSpec): string | null => runHook(d, 'xdp', buildPacket(spec));

  const key = (lport: number, rport: number, proto: number): F.FltCtKey => ({
    laddr: Uint8Array.of(10, 0, 0, 2, ...new Array(12).fill(0)),
    raddr: Uint8Array.of(10, 0, 0, 1, ...new Array(12).fill(0)),
    lport,
    rport,
    proto,
    family: F.FLT_FAMILY_V4,
  });

  it(`a table of ${CT_MIN} overfilled: the size holds, idle flows are evicted and counted, a busy connection stays; an evicted flow's reply is dropped as a miss`, () => {
    expect(ct.flows.capacity).toBe(CT_MIN);
    // a TCP connection the host opened, established and in use
    const busy = P('tcp 10.0.0.2:40000 -> 10.0.0.1:443');
    out(busy);
    expect(inbound(reverse(busy, { tcpFlags: TCP.syn | TCP.ack }))).toBe('allow');
    out({ ...busy, tcpFlags: TCP.ack });
    // a connection attempt not answered yet: its flow is not used again before the flood
    const idle = P('tcp 10.0.0.2:40001 -> 10.0.0.1:443');
    out(idle);
    // then three tables' worth of DNS-style queries, each a new flow, the clock standing still
    const n = 3 * CT_MIN;
    for (let i = 0; i < n; i++) out(P(`udp 10.0.0.2:${20000 + i} -> 10.0.0.1:53`));
    const t = ct.table();
    expect(t.maxEntries).toBe(CT_MIN);
    expect(t.entries).toBeLessThanOrEqual(CT_MIN);
    expect(t.entries).toBeGreaterThan(CT_MIN / 2);
    expect(t.entries).toBe([...ct.flows.keys()].length);
    expect(t.inserts).toBe(n + 2);
    expect([t.expiries, t.resets, t.misses]).toEqual([0, 0, 0]);
    expect(t.evictions).toBe(n + 2 - t.entries);
    // the LRU's second chance: a flow used since it was inserted outlives the one-shot ones
    expect(ct.flows.lookup(key(40000, 443, 6))).toBeDefined();
    expect(inbound(reverse(busy, { tcpFlags: TCP.ack | TCP.psh }))).toBe('allow');
    // the attempt was pushed out: its answer finds no flow, the rules drop it, and it counts
    expect(ct.flows.lookup(key(40001, 443, 6))).toBeUndefined();
    const before = d.counters().defaultDrop.packets;
    expect(inbound(reverse(idle, { tcpFlags: TCP.syn | TCP.ack }))).toBe('deny');
    expect(d.counters().defaultDrop.packets).toBe(before + 1n);
    expect(ct.table().misses).toBe(1);
    // so was the first query (a UDP answer is not a miss: a datagram may start a conversation);
    // the newest one's answer passes
    expect(inbound(reverse(P('udp 10.0.0.2:20000 -> 10.0.0.1:53')))).toBe('deny');
    expect(inbound(reverse(P(`udp 10.0.0.2:${20000 + n - 1} -> 10.0.0.1:53`)))).toBe('allow');
    // a new connection still gets in (and pushes out another idle flow)
    const next = P('tcp 10.0.0.2:40002 -> 10.0.0.1:443');
    out(next);
    expect(inbound(reverse(next, { tcpFlags: TCP.syn | TCP.ack }))).toBe('allow');
    const t2 = ct.table();
    expect(t2.inserts).toBe(n + 3);
    expect(t2.misses).toBe(1);
    expect(t2.evictions).toBe(n + 3 - t2.entries);
  });

  it('expiries and resets are counted where the programs remove flows, and are not evictions', () => {
    const q = P('udp 10.0.0.2:5353 -> 10.0.0.1:53');
    out(q);
    later(31); // udp_single is 30 s: the answer comes too late
    expect(inbound(reverse(q))).toBe('deny');
    const syn = P('tcp 10.0.0.2:40000 -> 10.0.0.1:8080');
    out(syn);
    expect(inbound(reverse(syn, { tcpFlags: TCP.syn | TCP.ack }))).toBe('allow');
    expect(inbound(reverse(syn, { tcpFlags: TCP.rst }))).toBe('allow');
    // the late ACK of the reset connection: a miss, dropped
    expect(inbound(reverse(syn, { tcpFlags: TCP.ack }))).toBe('deny');
    // a connection attempt that expired, then a new SYN on the same ports: the expired flow a new
    // connection replaces in place counts as an expiry and an insert
    const syn3 = P('tcp 10.0.0.2:40002 -> 10.0.0.1:8080');
    out(syn3);
    later(121); // syn_sent is 120 s
    out(syn3);
    expect(ct.table()).toEqual({ maxEntries: CT_MIN, entries: 1, inserts: 4, expiries: 2, resets: 1, evictions: 0, misses: 1 });
  });
});

describeKernel('the connection table at its default size', () => {
  it(`holds ${CT_DEFAULT_MAX.toLocaleString('en-US')} flows by default`, () => {
    const d = FilterDatapath.load('ctdefault');
    try {
      expect(d.conntrack().flows.capacity).toBe(CT_DEFAULT_MAX);
    } finally {
      d.close();
    }
  });
});
