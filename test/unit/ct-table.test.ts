// SPDX-License-Identifier: Apache-2.0
// The connection table's numbers and words (issue 15): --ct-max's range, evictions derived from the
// kernel's counts, the summary line, the note for a pinned table of another size, the metrics, and
// `filter explain`'s sentences when state passed a packet or did not.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { CT_DEFAULT_MAX, CT_MAX, CT_MIN, CT_TABLE_STATS, ctMaxNote, ctTableLine, ctTableReading, ctTableView, parseCtMax } from '../../src/filter/ct-table.js';
import type { FlowView } from '../../src/filter/conntrack.js';
import { decided, explainLines, type Explained } from '../../src/filter/explain.js';
import { parsePacket, TCP } from '../../src/filter/packet.js';
import type { FilterCounters } from '../../src/filter/datapath.js';
import { CT_METRICS, registerFilterMetrics } from '../../src/metrics/filter.js';
import { FILTER_STATS } from '../../src/filter/stats.js';

const counts = (inserts: bigint, expiries: bigint, resets: bigint, misses = 0n) => ({ inserts, expiries, resets, misses });

describe('--ct-max', () => {
  it('takes whole numbers of flows in range, as text or number', () => {
    expect(parseCtMax('64')).toBe(64);
    expect(parseCtMax(' 1048576 ')).toBe(1048576);
    expect(parseCtMax(CT_MAX)).toBe(CT_MAX);
    expect(CT_DEFAULT_MAX).toBe(262144);
  });
  it.each(['0', '63', String(CT_MAX + 1), '1e6', '262,144', '-5', 'lots', '', '12.5'])('refuses %j in one line naming the range', (v) => {
    expect(() => parseCtMax(v)).toThrowError(new RegExp(`^parse --ct-max: '${v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}' is not a whole number of flows from 64 to 16,777,216; the default is 262,144 \\(netfilter's nf_conntrack_max on a host with more than 4 GiB\\)$`));
  });
  it('names the config key when it is one', () => {
    expect(() => parseCtMax(true, 'filter.ctMax')).toThrowError(/^parse filter\.ctMax: true is not a whole number/);
    expect(() => parseCtMax(1.5, 'filter.ctMax')).toThrowError(/^parse filter\.ctMax: 1\.5 is not/);
  });
  it('a pinned table of another size keeps it, and says how to change it', () => {
    expect(ctMaxNote('eth1', 1000, 1000)).toBeNull();
    expect(ctMaxNote('eth1', 1048576, 262144)).toBe('eth1: the pinned connection table keeps its 262,144 entries (asked for 1,048,576); a new size takes effect when the filter is loaded again (ebpfnet unload --iface eth1, then start it): its tracked flows would be lost');
  });
});

describe('the table numbers', () => {
  it('evictions are inserts - expiries - resets - entries, never below 0', () => {
    expect(ctTableView(64, 60, counts(200n, 10n, 5n, 3n))).toEqual({ maxEntries: 64, entries: 60, inserts: 200, expiries: 10, resets: 5, evictions: 125, misses: 3 });
    // nothing evicted
    expect(ctTableView(64, 5, counts(20n, 10n, 5n)).evictions).toBe(0);
    // entries counted after a burst of inserts the counters did not see yet
    expect(ctTableView(64, 9, counts(5n, 0n, 0n)).evictions).toBe(0);
  });
  it('a reading repeats until the counters did not move across the entry count', () => {
    const seq = [counts(10n, 0n, 0n), counts(12n, 0n, 0n), counts(12n, 0n, 0n)];
    let i = 0;
    let counted = 0;
    const t = ctTableReading(64, () => seq[Math.min(i++, seq.length - 1)], () => (counted++, 12));
    expect(counted).toBe(2);
    expect(t.inserts).toBe(12);
    expect(t.evictions).toBe(0);
  });
  it('one line, and a hint when the table filled', () => {
    expect(ctTableLine(ctTableView(262144, 1234, counts(5000n, 3700n, 60n, 12n)))).toBe('1,234 of 262,144 entries (0.5%); 5,000 inserts, 3,700 expiries, 60 resets, 6 evictions, 12 misses (the table filled: the least recently used flows were evicted; raise --ct-max)');
    expect(ctTableLine(ctTableView(64, 0, counts(0n, 0n, 0n)))).toBe('0 of 64 entries (0%); 0 inserts, 0 expiries, 0 resets, 0 evictions, 0 misses');
  });
  it('the kernel slots are distinct, and not the packet statistics', () => {
    expect(new Set(CT_TABLE_STATS.map((s) => s.slot)).size).toBe(CT_TABLE_STATS.length);
    expect(CT_TABLE_STATS.map((s) => s.name).filter((n) => FILTER_STATS.some((f) => f.name === n))).toEqual([]);
  });
});

describe('the table metrics', () => {
  const zero = { packets: 0n, bytes: 0n };
  const c = { rules: [], total: 0, ...Object.fromEntries(FILTER_STATS.map((s) => [s.name, zero])) } as unknown as FilterCounters;
  const scrape = async (r: Registry): Promise<string> => r.metrics();
  it('per stateful interface: entries, size, and the events as counters; nothing for a stateless one', async () => {
    const r = new Registry();
    let evictions = 125;
    registerFilterMetrics(r, () => [
      { ifname: 'eth1', counters: () => c, ctTable: () => ({ ...ctTableView(64, 60, counts(200n, 10n, 5n, 3n)), evictions }) },
      { ifname: 'eth2', counters: () => c, ctTable: () => null },
    ]);
    const text = await scrape(r);
    expect(text).toContain('ebpfnet_filter_ct_entries{interface="eth1"} 60');
    expect(text).toContain('ebpfnet_filter_ct_max_entries{interface="eth1"} 64');
    expect(text).toContain('ebpfnet_filter_ct_inserts_total{interface="eth1"} 200');
    expect(text).toContain('ebpfnet_filter_ct_expiries_total{interface="eth1"} 10');
    expect(text).toContain('ebpfnet_filter_ct_resets_total{interface="eth1"} 5');
    expect(text).toContain('ebpfnet_filter_ct_misses_total{interface="eth1"} 3');
    expect(text).toContain('ebpfnet_filter_ct_evictions_total{interface="eth1"} 125');
    expect(text).toContain('# TYPE ebpfnet_filter_ct_evictions_total counter');
    expect(text).not.toContain('interface="eth2"} ');
    expect(text.match(/ebpfnet_filter_ct_[a-z_]+\{interface="eth2"/)).toBeNull();
    // a busy moment reads lower: the counter stays where it was
    evictions = 120;
    expect(await scrape(r)).toContain('ebpfnet_filter_ct_evictions_total{interface="eth1"} 125');
    evictions = 130;
    expect(await scrape(r)).toContain('ebpfnet_filter_ct_evictions_total{interface="eth1"} 130');
    expect(CT_METRICS.map((m) => m.name)).toEqual(['ebpfnet_filter_ct_inserts_total', 'ebpfnet_filter_ct_expiries_total', 'ebpfnet_filter_ct_resets_total', 'ebpfnet_filter_ct_misses_total', 'ebpfnet_filter_ct_evictions_total']);
  });
});

describe('filter explain with connection state', () => {
  const flow: FlowView = { family: 4, proto: 'tcp', local: '10.0.0.2:40000', remote: '10.0.0.1:443', state: 'established', openedBy: 'local', replied: true, lastSeenSecondsAgo: 1, expiresInSeconds: 431999 };
  const base: Explained = { packet: 'tcp 10.0.0.1:443 -> 10.0.0.2:40000', rules: { verdict: 'DROP', by: 'the default (deny)' }, audit: false, state: null };
  it('passed as established: the flow, and what the rules alone would say', () => {
    const e = { ...base, state: { flow, as: 'established' as const, why: null } };
    expect(explainLines(e)).toEqual([
      'tcp 10.0.0.1:443 -> 10.0.0.2:40000: PASS as established (the tracked flow tcp 10.0.0.2:40000 <-> 10.0.0.1:443, established, opened by this host)',
      'without that flow: DROP by the default (deny)',
    ]);
    expect(decided(e)).toEqual({ verdict: 'PASS', by: 'connection state (established)' });
  });
  it('passed as related: an ICMP error about the flow', () => {
    const e = { ...base, packet: 'icmp 10.0.0.9 -> 10.0.0.2 type 3 code 4', state: { flow, as: 'related' as const, why: null } };
    expect(explainLines(e)[0]).toBe('icmp 10.0.0.9 -> 10.0.0.2 type 3 code 4: PASS as related (an ICMP error about the tracked flow tcp 10.0.0.2:40000 <-> 10.0.0.1:443, established, opened by this host)');
  });
  it('a deny rule wins over the tracked flow', () => {
    const e = { ...base, rules: { verdict: 'DROP' as const, by: "rule 'deny from 10.0.0.0/24'" }, state: { flow, as: null, why: 'deny-rule' as const } };
    expect(explainLines(e)).toEqual(["tcp 10.0.0.1:443 -> 10.0.0.2:40000: DROP by rule 'deny from 10.0.0.0/24'", 'a deny rule decides before connection state: the tracked flow tcp 10.0.0.2:40000 <-> 10.0.0.1:443, established, opened by this host does not let it through']);
    expect(decided(e)).toEqual(e.rules);
  });
  it('a packet of the flow\'s key that is not part of it (a SYN): the rules decide', () => {
    const e = { ...base, state: { flow, as: null, why: 'not-part' as const } };
    expect(explainLines(e)[1]).toBe('the flow tcp 10.0.0.2:40000 <-> 10.0.0.1:443, established, opened by this host is tracked, but this packet does not count as part of it (a SYN opens a new connection, and explain sends a SYN unless told "flags ack"; until the far side answers, only its SYN-ACK or RST counts)');
  });
  it('explain takes TCP flags', () => {
    expect(parsePacket('tcp 10.0.0.1:443 -> 10.0.0.2:40000 flags ack,psh').tcpFlags).toBe(TCP.ack | TCP.psh);
    expect(parsePacket('tcp 10.0.0.1:443 -> 10.0.0.2:40000 flags SYN+ACK').tcpFlags).toBe(TCP.syn | TCP.ack);
    expect(parsePacket('tcp 10.0.0.1:443 -> 10.0.0.2:40000').tcpFlags).toBeUndefined();
    expect(() => parsePacket('tcp 10.0.0.1:443 -> 10.0.0.2:40000 flags urg')).toThrowError(/^parse packet 'tcp 10.0.0.1:443 -> 10.0.0.2:40000 flags urg': 'urg' is not a TCP flag/);
    expect(() => parsePacket('udp 10.0.0.1:53 -> 10.0.0.2:40000 flags ack')).toThrowError(/only TCP packets take flags/);
  });
  it('without state: what explain always said', () => {
    expect(explainLines(base)).toEqual(['tcp 10.0.0.1:443 -> 10.0.0.2:40000: DROP by the default (deny)']);
    expect(explainLines({ ...base, audit: true, rules: { verdict: 'PASS', by: 'the default (deny)' } })).toEqual(['tcp 10.0.0.1:443 -> 10.0.0.2:40000: PASS by the default (deny) (audit mode passes everything)']);
  });
});

describe('filter.ctMax in the agent config', () => {
  it('sizes the table, checked with the same range as --ct-max', async () => {
    const { parseConfig } = await import('../../src/agent/config.js');
    expect(parseConfig('filter:\n  interfaces: [eth1]\n  default: deny\n  ctMax: 1048576\n', 'a.yaml').filter!.ctMax).toBe(1048576);
    expect(parseConfig('filter:\n  interfaces: [eth1]\n  default: deny\n', 'a.yaml').filter!.ctMax).toBeUndefined();
    for (const bad of ['10', '"lots"', '2.5', '16777217']) {
      expect(() => parseConfig(`filter:\n  interfaces: [eth1]\n  ctMax: ${bad}\n`, 'a.yaml')).toThrowError(/^read config a\.yaml(:\d+)?: filter\.ctMax: .* is not a whole number of flows from 64 to 16,777,216/);
    }
  });
});
