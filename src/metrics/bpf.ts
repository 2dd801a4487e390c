// SPDX-License-Identifier: Apache-2.0
// What the BPF side costs and how full it is, for every datapath the agent runs:
//   ebpfnet_bpf_program_runs_total{datapath,program,target}         runs counted by the kernel
//   ebpfnet_bpf_program_run_seconds_total{datapath,program,target}  time spent in those runs
//   ebpfnet_bpf_stats_enabled                                        1 while the run statistics are on
//   ebpfnet_bpf_map_entries / ebpfnet_bpf_map_max_entries{datapath,map,target}
// Run time per packet is rate(run_seconds_total) / rate(runs_total). The kernel counts runs only
// while BPF statistics are on (the agent turns them on while it runs), so the counters stand
// still when ebpfnet_bpf_stats_enabled is 0. No kernel calls here: the sources are functions.
import { Counter, Gauge, type Registry } from 'prom-client';

export interface BpfSource {
  /** filter, lb, trace */
  datapath: string;
  /** what the program is attached to: an interface, a cgroup, a tracepoint */
  target: string;
  programs(): Array<{ name: string; runCount: bigint; runTimeNs: bigint }>;
  maps(): Array<{ map: string; entries: number; maxEntries: number }>;
}

export const BPF_METRIC_NAMES = {
  runs: 'ebpfnet_bpf_program_runs_total',
  runSeconds: 'ebpfnet_bpf_program_run_seconds_total',
  statsEnabled: 'ebpfnet_bpf_stats_enabled',
  mapEntries: 'ebpfnet_bpf_map_entries',
  mapMaxEntries: 'ebpfnet_bpf_map_max_entries',
} as const;

/**
 * Registers the BPF metrics. One read of the sources per scrape serves the metrics that share it
 * (prom-client calls each collect() in turn: the first of a pair reads, the second reuses).
 */
export function registerBpfMetrics(registry: Registry, sources: () => BpfSource[], statsEnabled: () => boolean): void {
  let progs: Array<{ datapath: string; program: string; target: string; runCount: bigint; runTimeNs: bigint }> = [];
  let maps: Array<{ datapath: string; map: string; target: string; entries: number; maxEntries: number }> = [];
  new Counter({
    name: BPF_METRIC_NAMES.runs,
    help: 'Times each BPF program ran, as the kernel counts them (only while ebpfnet_bpf_stats_enabled is 1).',
    labelNames: ['datapath', 'program', 'target'] as const,
    registers: [registry],
    collect() {
      progs = sources().flatMap((s) => s.programs().map((p) => ({ datapath: s.datapath, program: p.name, target: s.target, runCount: p.runCount, runTimeNs: p.runTimeNs })));
      this.reset();
      for (const p of progs) this.inc({ datapath: p.datapath, program: p.program, target: p.target }, Number(p.runCount));
    },
  });
  new Counter({
    name: BPF_METRIC_NAMES.runSeconds,
    help: 'Time each BPF program spent running, in seconds (divide its rate by the runs rate for the time per run, e.g. per packet).',
    labelNames: ['datapath', 'program', 'target'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const p of progs) this.inc({ datapath: p.datapath, program: p.program, target: p.target }, Number(p.runTimeNs) / 1e9);
    },
  });
  new Gauge({
    name: BPF_METRIC_NAMES.statsEnabled,
    help: '1 while the kernel collects BPF run statistics for this agent (it turns them on while it runs), else 0.',
    registers: [registry],
    collect() {
      this.set(statsEnabled() ? 1 : 0);
    },
  });
  new Gauge({
    name: BPF_METRIC_NAMES.mapEntries,
    help: 'Entries in each BPF map the agent owns. Hash and LPM maps: elements present; arrays hold every element, so entries equals max entries, except flt_counters: the rule slots in use.',
    labelNames: ['datapath', 'map', 'target'] as const,
    registers: [registry],
    collect() {
      maps = sources().flatMap((s) => s.maps().map((m) => ({ datapath: s.datapath, target: s.target, ...m })));
      this.reset();
      for (const m of maps) this.set({ datapath: m.datapath, map: m.map, target: m.target }, m.entries);
    },
  });
  new Gauge({
    name: BPF_METRIC_NAMES.mapMaxEntries,
    help: 'The most entries each BPF map the agent owns can hold.',
    labelNames: ['datapath', 'map', 'target'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const m of maps) this.set({ datapath: m.datapath, map: m.map, target: m.target }, m.maxEntries);
    },
  });
}
