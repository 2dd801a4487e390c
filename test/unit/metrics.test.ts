// SPDX-License-Identifier: Apache-2.0
// The agent's BPF and API metrics from fake sources, and the sysctl fallback of the run statistics
// on a stand-in file (the real switch is exercised by test/kernel/bpf-stats.test.ts).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { enableRunStats } from '../../src/loader/stats.js';
import { apiMetrics } from '../../src/metrics/api.js';
import { registerBpfMetrics, type BpfSource } from '../../src/metrics/bpf.js';
import { computedCounter } from '../../src/metrics/computed.js';
import { newRegistry } from '../../src/metrics/server.js';

const src = (target: string, runs: bigint, ns: bigint, entries: number): BpfSource => ({
  datapath: 'filter',
  target,
  programs: () => [{ name: 'filter_xdp', runCount: runs, runTimeNs: ns }],
  maps: () => [{ map: 'flt_rules', entries, maxEntries: 1 << 20 }],
});

describe('bpf metrics', () => {
  it('exports runs, seconds, map fill per source; series of a datapath that went away disappear', async () => {
    const registry = new Registry();
    let sources = [src('eth0', 1000n, 25_000n, 12), src('eth1', 5n, 3_000_000_000n, 0)];
    let reads = 0;
    let on = true;
    registerBpfMetrics(registry, () => (reads++, sources), () => on);
    const body = await registry.metrics();
    expect(body).toContain('# TYPE ebpfnet_bpf_program_runs_total counter');
    expect(body).toContain('ebpfnet_bpf_program_runs_total{datapath="filter",program="filter_xdp",target="eth0"} 1000');
    expect(body).toContain('ebpfnet_bpf_program_run_seconds_total{datapath="filter",program="filter_xdp",target="eth0"} 0.000025');
    expect(body).toContain('ebpfnet_bpf_program_run_seconds_total{datapath="filter",program="filter_xdp",target="eth1"} 3');
    expect(body).toContain('ebpfnet_bpf_map_entries{datapath="filter",map="flt_rules",target="eth0"} 12');
    expect(body).toContain('ebpfnet_bpf_map_max_entries{datapath="filter",map="flt_rules",target="eth1"} 1048576');
    expect(body).toContain('ebpfnet_bpf_stats_enabled 1');
    // one read for the programs' pair of metrics, one for the maps' pair
    expect(reads).toBe(2);
    sources = [src('eth0', 1500n, 30_000n, 13)];
    on = false;
    const again = await registry.metrics();
    expect(again).toContain('ebpfnet_bpf_program_runs_total{datapath="filter",program="filter_xdp",target="eth0"} 1500');
    expect(again).not.toContain('target="eth1"');
    expect(again).toContain('ebpfnet_bpf_stats_enabled 0');
  });

  it('api metrics: requests by method, route and status; a latency histogram by method and route', async () => {
    const registry = new Registry();
    const m = apiMetrics(registry);
    m.observe('PUT', '/v1/filter', 200, 0.0004);
    m.observe('PUT', '/v1/filter', 412, 0.0002);
    m.observe('GET', undefined, 404, 0.0001);
    const body = await registry.metrics();
    expect(body).toContain('ebpfnet_api_requests_total{method="PUT",route="/v1/filter",status="200"} 1');
    expect(body).toContain('ebpfnet_api_requests_total{method="GET",route="unmatched",status="404"} 1');
    expect(body).toContain('ebpfnet_api_request_duration_seconds_bucket{le="0.00025",method="PUT",route="/v1/filter"} 1');
    expect(body).toContain('ebpfnet_api_request_duration_seconds_bucket{le="0.0005",method="PUT",route="/v1/filter"} 2');
    expect(body).toContain('ebpfnet_api_request_duration_seconds_count{method="PUT",route="/v1/filter"} 2');
  });
});

describe('run statistics through the sysctl', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-stats-'));
    file = join(dir, 'bpf_stats_enabled');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('sets 1 and writes the previous value back on close (once)', () => {
    writeFileSync(file, '0\n');
    const s = enableRunStats({ via: 'sysctl', sysctl: file });
    expect(s.via).toBe('sysctl');
    expect(readFileSync(file, 'utf8')).toBe('1\n');
    s.close();
    expect(readFileSync(file, 'utf8')).toBe('0\n');
    writeFileSync(file, '1\n'); // someone else turned it on since: a second close must not undo that
    s.close();
    expect(readFileSync(file, 'utf8')).toBe('1\n');
  });

  it('leaves a switch that was already on alone, and says why it cannot read one', () => {
    writeFileSync(file, '1\n');
    const s = enableRunStats({ via: 'sysctl', sysctl: file });
    expect(s.via).toBe('already on');
    s.close();
    expect(readFileSync(file, 'utf8')).toBe('1\n');
    expect(() => enableRunStats({ via: 'sysctl', sysctl: join(dir, 'missing') })).toThrow(/^turn on bpf run statistics: cannot read .*missing/);
  });
});

describe('exposition registry', () => {
  it('writes exactly what prom-client\'s own registry writes, escapes and odd values included', async () => {
    const ours = newRegistry();
    const theirs = new Registry();
    const registers = [ours, theirs];
    const c = new Counter({ name: 'x_total', help: 'a \\ help\nwith a newline', labelNames: ['rule', 'n'], registers });
    c.inc({ rule: 'deny tcp/22', n: 1 }, 3);
    c.inc({ rule: 'back\\slash "quoted"\nnewline', n: 2 }, 0.5);
    const g = new Gauge({ name: 'y', help: 'gauge', registers });
    g.set(-1.25);
    const odd = new Gauge({ name: 'z', help: 'odd values', labelNames: ['k'], registers });
    odd.set({ k: 'nan' }, NaN);
    odd.set({ k: 'inf' }, Infinity);
    odd.set({ k: '-inf' }, -Infinity);
    odd.set({ k: 'big' }, 2 ** 60);
    const h = new Histogram({ name: 'h_seconds', help: 'histogram', labelNames: ['route'], buckets: [0.1, 1], registers });
    h.observe({ route: '/v1' }, 0.5);
    for (const r of registers) computedCounter(r, { name: 'computed_total', help: 'computed', labelNames: ['i'] }, () => [{ labels: { i: 'eth0' }, value: 7 }]);
    new Gauge({ name: 'empty', help: 'no samples', labelNames: ['k'], registers });
    const text = await ours.metrics();
    expect(text).toBe(await theirs.metrics());
    expect(text).toContain('x_total{rule="back\\\\slash \\"quoted\\"\\nnewline",n="2"} 0.5');
    expect(text).toContain('z{k="nan"} Nan');
    // with default labels it is prom-client's formatter throughout, and still the same text
    ours.setDefaultLabels({ host: 'a' });
    theirs.setDefaultLabels({ host: 'a' });
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });
});
