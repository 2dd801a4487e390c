// SPDX-License-Identifier: Apache-2.0
// The HTTP API's own metrics:
//   ebpfnet_api_requests_total{method,route,status}            requests answered
//   ebpfnet_api_request_duration_seconds{method,route}         time from the request to the answer
// `route` is the route's pattern (/v1/filter/rules/:id), never the raw URL, so ids and typos
// cannot grow the label set; requests that match no route count as `unmatched`.
import { Counter, Histogram, type Registry } from 'prom-client';

export const API_METRIC_NAMES = {
  requests: 'ebpfnet_api_requests_total',
  duration: 'ebpfnet_api_request_duration_seconds',
} as const;

/** Upper bounds in seconds: a small write is ~0.5 ms, a 10,000-rule PUT or scrape ~0.1-1 s. */
export const API_LATENCY_BUCKETS = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export interface ApiMetrics {
  observe(method: string, route: string | undefined, status: number, seconds: number): void;
}

export function apiMetrics(registry: Registry): ApiMetrics {
  const requests = new Counter({
    name: API_METRIC_NAMES.requests,
    help: 'HTTP API requests answered, per method, route and status code.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: API_METRIC_NAMES.duration,
    help: 'Time from receiving an HTTP API request to sending its answer, in seconds; a write is answered once applied to the kernel and on disk.',
    labelNames: ['method', 'route'] as const,
    buckets: API_LATENCY_BUCKETS,
    registers: [registry],
  });
  return {
    observe(method, route, status, seconds) {
      const r = route ?? 'unmatched';
      requests.inc({ method, route: r, status: String(status) });
      duration.observe({ method, route: r }, seconds);
    },
  };
}
