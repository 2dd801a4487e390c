// SPDX-License-Identifier: Apache-2.0
// Prometheus metrics of `ebpfnet trace`, on a registry the caller owns (never the global one):
//   ebpfnet_trace_events_total{syscall,result}   calls traced, by syscall and `0`/errno name
//   ebpfnet_trace_events_lost_total              events the kernel could not hand to user space
// No kernel calls here: the lost count comes from a function the caller passes in.
import { Counter, Gauge, type Registry } from 'prom-client';

export interface TraceMetrics {
  /** counts one event the tracer showed */
  observe(syscall: string, result: string): void;
}

/**
 * `syscalls` are the ones being traced: their `result="0"` series start at 0, so rate() works from the
 * first scrape instead of from the first event.
 */
export function traceMetrics(registry: Registry, syscalls: readonly string[], lost: () => bigint | number): TraceMetrics {
  // Events are counted in plain maps and handed to prom-client when scraped: a labelled inc() per
  // event would cost the reader more than rendering the event does.
  const pending = new Map<string, Map<string, number>>();
  const events = new Counter({
    name: 'ebpfnet_trace_events_total',
    help: 'Syscalls traced, by syscall and result (0 or the errno name, e.g. EEXIST).',
    labelNames: ['syscall', 'result'] as const,
    registers: [registry],
    collect() {
      for (const [syscall, byResult] of pending) {
        for (const [result, n] of byResult) if (n) this.inc({ syscall, result }, n);
        byResult.clear();
      }
    },
  });
  for (const s of syscalls) events.inc({ syscall: s, result: '0' }, 0);
  // The kernel keeps an absolute count; a counter only goes up, so each scrape adds the difference.
  let seen = 0;
  new Counter({
    name: 'ebpfnet_trace_events_lost_total',
    help: 'Calls traced but not reported: the ring buffer was full, or the thread shared its in-flight slot with another thread inside a traced call.',
    registers: [registry],
    collect() {
      const now = Number(lost());
      if (now > seen) this.inc(now - seen);
      seen = Math.max(seen, now);
    },
  });
  return {
    observe(syscall, result) {
      let m = pending.get(syscall);
      if (!m) pending.set(syscall, (m = new Map()));
      m.set(result, (m.get(result) ?? 0) + 1);
    },
  };
}

/** The agent's event streams (GET /v1/trace/events): how many are open, and what they dropped. */
export function registerTraceStreamMetrics(registry: Registry, streams: () => { clients: number; dropped: number }): void {
  new Gauge({
    name: 'ebpfnet_trace_streams',
    help: 'Open tracer event streams (GET /v1/trace/events).',
    registers: [registry],
    collect() {
      this.set(streams().clients);
    },
  });
  let seen = 0;
  new Counter({
    name: 'ebpfnet_trace_stream_dropped_total',
    help: 'Events not sent to a stream because its client read too slowly (its buffer was full).',
    registers: [registry],
    collect() {
      const now = streams().dropped;
      if (now > seen) this.inc(now - seen);
      seen = Math.max(seen, now);
    },
  });
}
