// SPDX-License-Identifier: Apache-2.0
// What `lb explain`, `lb list` and the metrics say, computed from the same slot table the datapath
// draws from; and the CLI's promise for bad input: one line, exit 2, before anything is opened.
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { handleError } from '../../src/cli/present.js';
import { buildProgram } from '../../src/cli/program.js';
import { explainText, listTable } from '../../src/cli/lb.js';
import { makeService } from '../../src/lb/model.js';
import { IdSource, planUpsert, type LiveService } from '../../src/lb/plan.js';
import { explain, serviceView, type ServiceView } from '../../src/lb/view.js';
import { registerLbMetrics } from '../../src/metrics/lb.js';

/** The live service a plan would create, as the kernel half would read it back. */
function liveOf(addr: string, backends: string[], affinity = 0): LiveService {
  const p = planUpsert(undefined, makeService(addr, backends, affinity), 0, new IdSource(1, 1));
  const sw = p.switch as { key: LiveService['key']; value: LiveService['value'] };
  const byId = new Map(p.writeBackends.entries());
  if (sw.value.backend_id) {
    const id = sw.value.backend_id;
    return { key: sw.key, value: sw.value, members: [{ id, value: byId.get(id)! }], selection: sw.value.slots ? [id] : [] };
  }
  const slot = new Map(p.writeSlots.entries().map(([k, v]) => [k.slot, v]));
  const members = Array.from({ length: sw.value.backends }, (_, i) => {
    const id = slot.get(sw.value.members_at + i)!;
    return { id, value: byId.get(id)! };
  });
  const selection = Array.from({ length: sw.value.slots }, (_, i) => slot.get(i)!);
  return { key: sw.key, value: sw.value, members, selection };
}

const view = (addr: string, backends: string[], affinity = 0, conns: Record<number, bigint> = {}): ServiceView =>
  serviceView(
    liveOf(addr, backends, affinity),
    new Map([[1, { conns: 10n, rejects: 2n, affinity: 1n, misses: 0n }]]),
    new Map(Object.entries(conns).map(([k, v]) => [Number(k), { conns: v }])),
  );

describe('lb view and explain', () => {
  it('shows each backend with its weight, state, slots and share of new connections', () => {
    const v = view('10.96.0.10:80/tcp', ['10.0.0.1:80', '10.0.0.2:80,weight=3', '10.0.0.3:80,state=draining'], 0, { 1: 4n, 2: 6n });
    expect(v.backends.map((b) => [b.backend, b.weight, b.state, b.slots, b.share, b.conns])).toEqual([
      ['10.0.0.1:80', 1, 'active', 1, 0.25, 4n],
      ['10.0.0.2:80', 3, 'active', 3, 0.75, 6n],
      ['10.0.0.3:80', 1, 'draining', 0, 0, 0n],
    ]);
    expect(listTable([v]).split('\n')).toEqual([
      'service / backend  weight  state     affinity  slots  share  connections  rejects',
      '10.96.0.10:80/tcp  -       -         off       4      -      10           2',
      '  10.0.0.1:80      1       active    -         1      25.0%  4            -',
      '  10.0.0.2:80      3       active    -         3      75.0%  6            -',
      '  10.0.0.3:80      1       draining  -         0      0.0%   0            -',
    ]);
  });

  it('explains a weighted random choice, naming what is draining', () => {
    const e = explain(view('10.96.0.10:80/tcp', ['10.0.0.1:80', '10.0.0.2:80,weight=3', '10.0.0.3:80,state=draining']));
    expect(e.outcome).toBe('random');
    expect(e.candidates).toEqual([
      { backend: '10.0.0.1:80', chance: 0.25 },
      { backend: '10.0.0.2:80', chance: 0.75 },
    ]);
    expect(explainText(e)).toBe(
      [
        '10.96.0.10:80/tcp: a new connection goes to one of 2 backends, drawn at random',
        '  - a random slot of 4: 10.0.0.1:80 25%, 10.0.0.2:80 75%',
        '  - slots follow the weights 10.0.0.1:80=1, 10.0.0.2:80=3',
        '  - draining, no new connections: 10.0.0.3:80',
      ].join('\n'),
    );
  });

  it('explains a refusal: no backends, or none active', () => {
    expect(explain(view('10.96.0.10:80/tcp', [])).reasons).toEqual(['the service has no backends', 'connect() and sendto() fail at once with ECONNREFUSED']);
    const e = explain(view('10.96.0.10:80/tcp', ['10.0.0.3:80,state=draining']));
    expect(e.outcome).toBe('refuse');
    expect(e.reasons[0]).toBe('the service has no active backend (1 draining: 10.0.0.3:80)');
  });

  it('follows session affinity while it is valid, and says why when it is not', () => {
    const v = view('10.96.0.10:80/tcp', ['10.0.0.1:80', '10.0.0.2:80'], 60);
    const now = 1_000_000_000_000n;
    const pinned = explain(v, { netnsCookie: 7n, entry: { backend_id: 2, last_used: now - 5_000_000_000n }, now });
    expect(pinned.outcome).toBe('affinity');
    expect(pinned.backend).toBe('10.0.0.2:80');
    expect(pinned.reasons[0]).toBe('session affinity (60s): this network namespace (cookie 7) used 10.0.0.2:80 5s ago');
    const expired = explain(v, { netnsCookie: 7n, entry: { backend_id: 2, last_used: now - 61_000_000_000n }, now });
    expect(expired.outcome).toBe('random');
    expect(expired.reasons[0]).toMatch(/expired 1s ago/);
    const none = explain(v, { netnsCookie: 7n, entry: undefined, now });
    expect(none.reasons[0]).toMatch(/has no backend yet/);
    const drained = explain(view('10.96.0.10:80/tcp', ['10.0.0.1:80', '10.0.0.2:80,state=draining'], 60), {
      netnsCookie: 7n,
      entry: { backend_id: 2, last_used: now },
      now,
    });
    expect(drained.outcome).toBe('random');
    expect(drained.backend).toBe('10.0.0.1:80');
    expect(drained.reasons[0]).toMatch(/10\.0\.0\.2:80 is draining: no new connections/);
  });
});

describe('lb metrics', () => {
  it('exposes connections per service and backend, rejects, and gauges on the given registry', async () => {
    const registry = new Registry();
    const v = view('10.96.0.10:80/tcp', ['10.0.0.1:80', '10.0.0.2:80,state=draining'], 0, { 1: 7n, 2: 3n });
    let reads = 0;
    registerLbMetrics(registry, () => {
      reads++;
      return [v];
    });
    const text = await registry.metrics();
    expect(text).toContain('ebpfnet_lb_connections_total{service="10.96.0.10:80/tcp",backend="10.0.0.1:80"} 7');
    expect(text).toContain('ebpfnet_lb_connections_total{service="10.96.0.10:80/tcp",backend="10.0.0.2:80"} 3');
    expect(text).toContain('ebpfnet_lb_rejects_total{service="10.96.0.10:80/tcp"} 2');
    expect(text).toContain('ebpfnet_lb_services 1');
    expect(text).toContain('ebpfnet_lb_backends{service="10.96.0.10:80/tcp",state="active"} 1');
    expect(text).toContain('ebpfnet_lb_backends{service="10.96.0.10:80/tcp",state="draining"} 1');
    expect(reads).toBe(1);
  });
});

describe('lb cli: bad input is one line, exit 2, before anything is opened', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = 0;
  });

  const run = async (...args: string[]): Promise<string[]> => {
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => (lines.push(String(s)), true));
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    await buildProgram()
      .parseAsync(['node', 'ebpfnet', 'lb', ...args])
      .catch(handleError);
    return lines;
  };

  it.each([
    [['add', '10.96.0.10:80/sctp'], /^ebpfnet: lb add: service '10\.96\.0\.10:80\/sctp': unknown protocol 'sctp'/],
    [['add', '10.96.0.10:0/tcp'], /port 0 is out of range/],
    [['add', '10.96.0.10:80/tcp', '--backend', '10.244.1.5'], /backend '10\.244\.1\.5' has no port/],
    [['add', 'ten.96.0.10:80/tcp'], /'ten\.96\.0\.10' is not an IP address/],
    [['del', '10.96.0.10/tcp'], /has no port/],
    [['explain', '10.96.0.10:99999/udp'], /port 99999 is out of range/],
    [['apply', '/nonexistent/services.yaml'], /^ebpfnet: lb apply \/nonexistent\/services\.yaml: cannot read the file \(ENOENT\)/],
    [['add', '10.96.0.10:80/tcp', '--frobnicate'], /^ebpfnet: lb add: unknown option '--frobnicate'/],
  ])('%j', async (args, re) => {
    const lines = await run(...args);
    expect(process.exitCode).toBe(2);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(re);
  });

  it('registers the lb commands', () => {
    const lb = buildProgram().commands.find((c) => c.name() === 'lb')!;
    expect(lb.commands.map((c) => c.name())).toEqual(['attach', 'add', 'del', 'list', 'apply', 'explain', 'detach', 'metrics']);
  });
});
