// SPDX-License-Identifier: Apache-2.0
// `ebpfnet lb ...`: socket-level service load balancing. `attach` loads and pins the balancer on a
// cgroup; every other command opens the pins and acts on the running balancer, so each one is a
// short process. Input is parsed and checked before anything is opened: bad input is one line,
// exit 2, and nothing changes.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { EbpfnetError } from '../errors.js';
import { onShutdown } from '../loader/guard.js';
import {
  Balancer,
  attachBalancer,
  detachBalancer,
  lbPinSetting,
  makeService,
  parseServiceAddr,
  parseServiceFile,
  type BalancerStatus,
  type ChangeResult,
  type Explanation,
  type ServiceView,
} from '../lb/index.js';
import { readNames } from '../lb/names.js';
import { AgentClient, lbThroughAgent, refuseLocalFlags, serviceViewOf, withAgentOptions, type AgentOptions } from './agent-client.js';
import { printJson, wantsJson, withOutputOption, type OutputOptions } from './output.js';
import { table } from './present.js';

const agentClient = (o: AgentOptions): AgentClient => new AgentClient({ ...o, agent: o.agent! });

const EXAMPLES = `
Examples:
  sudo ebpfnet lb attach                                   every process on the machine (cgroup v2 root)
  sudo ebpfnet lb attach --cgroup system.slice/app.service only that cgroup and below
  sudo ebpfnet lb add 10.96.0.10:80/tcp --backend 10.244.1.5:8080 --backend 10.244.2.7:8080,weight=2
  sudo ebpfnet lb add [fd00::10]:53/udp --backend [fd00::5]:53 --affinity 600
  sudo ebpfnet lb add 10.96.0.10:80/tcp --backend 10.244.1.5:8080,state=draining --backend 10.244.2.7:8080
  sudo ebpfnet lb list
  sudo ebpfnet lb explain 10.96.0.10:80/tcp
  sudo ebpfnet lb apply services.yaml
  sudo ebpfnet lb del 10.96.0.10:80/tcp
  sudo ebpfnet lb detach

A service is VIP:PORT/PROTO (tcp or udp; IPv6 in brackets). A backend is IP:PORT, optionally
followed by ,weight=N (1-65535, default 1) and ,state=active|draining. A draining backend keeps its
connections but gets no new ones; a service without an active backend refuses connect() at once
(ECONNREFUSED). State is pinned under ${lbPinSetting()}.`;

const FILE_HELP = `
The file is YAML (or JSON) and holds the whole set: services not in it are deleted, and the change
is switched in one step, so no connection ever sees half of it. JSON is read much faster than YAML,
which matters from a few thousand services on.

  services:
    - service: 10.96.0.10:80/tcp
      backends:
        - 10.244.1.5:8080
        - 10.244.2.7:8080,weight=2
    - service: "[fd00::10]:53/udp"
      affinity: 600                 # seconds a client network namespace keeps its backend
      backends:
        - { address: "[fd00::5]:53", weight: 1, state: draining }
        - "[fd00::6]:53"`;

const collect = (v: string, prev: string[]): string[] => [...prev, v];
const out = (s: string): void => {
  process.stdout.write(`${s}\n`);
};

function withBalancer<T>(op: string, fn: (b: Balancer) => T): T {
  const b = Balancer.open({ op });
  try {
    return fn(b);
  } finally {
    b.close();
  }
}

function describeChange(r: ChangeResult): string {
  const s = r.summary;
  const parts: string[] = [];
  if (s.added.length) parts.push(`${s.added.length} added`);
  if (s.changed.length) parts.push(`${s.changed.length} changed`);
  if (s.removed.length) parts.push(`${s.removed.length} removed`);
  if (s.unchanged.length) parts.push(`${s.unchanged.length} unchanged`);
  return parts.join(', ') || 'nothing to do';
}

function serviceLine(v: ServiceView): string {
  const active = v.backends.filter((b) => b.state === 'active').length;
  const draining = v.backends.length - active;
  const bits = [`${v.backends.length} backend${v.backends.length === 1 ? '' : 's'} (${active} active${draining ? `, ${draining} draining` : ''})`, `${v.slots} slot${v.slots === 1 ? '' : 's'}`];
  if (v.affinity) bits.push(`affinity ${v.affinity}s`);
  if (!active) bits.push('refuses new connections');
  return bits.join(', ');
}

const pct = (x: number): string => `${(Math.round(x * 1000) / 10).toFixed(1)}%`;

export function listTable(services: ServiceView[]): string {
  const rows: Array<Array<string | number | null>> = [];
  for (const s of services) {
    rows.push([s.service, null, null, s.affinity ? `${s.affinity}s` : 'off', s.slots, null, String(s.conns), String(s.rejects)]);
    for (const b of s.backends) rows.push([`  ${b.backend}`, b.weight, b.state, null, b.slots, pct(b.share), String(b.conns), null]);
  }
  return table(['service / backend', 'weight', 'state', 'affinity', 'slots', 'share', 'connections', 'rejects'], rows);
}

function statusLine(st: BalancerStatus): string {
  return `balancer attached to ${st.cgroup ?? 'a cgroup that no longer exists'}: ${st.programs.length} programs, pinned at ${st.pinDir}`;
}

/** A service as `lb list -o json` and `status -o json` show it: counters as numbers. */
export const serviceJson = (v: ServiceView): Record<string, unknown> => ({
  ...v,
  conns: Number(v.conns),
  rejects: Number(v.rejects),
  affinityHits: Number(v.affinityHits),
  misses: Number(v.misses),
  backends: v.backends.map((b) => ({ ...b, conns: Number(b.conns) })),
});

export function explainText(e: Explanation): string {
  let head: string;
  if (e.outcome === 'refuse') head = 'a new connection is refused at once (ECONNREFUSED)';
  else if (e.outcome === 'affinity') head = `a new connection from this network namespace goes to ${e.backend}`;
  else if (e.backend) head = `a new connection goes to ${e.backend}`;
  else head = `a new connection goes to one of ${e.candidates.length} backends, drawn at random`;
  return [`${e.service}: ${head}`, ...e.reasons.map((r) => `  - ${r}`)].join('\n');
}

export function registerLb(program: Command): void {
  const lb = program
    .command('lb')
    .summary('socket-level service load balancing: VIP:port translated to a backend at connect()')
    .description(
      'socket-level service load balancing, like Kubernetes Services without kube-proxy: connect() and sendto() to a service VIP:PORT from the attached cgroup go to one of its backends, chosen by weight, through hash maps (no iptables chains)',
    )
    .addHelpText('after', EXAMPLES)
    .showHelpAfterError(false)
    .configureOutput({
      outputError: (str, write) => write(`ebpfnet: lb: ${str.replace(/^error: /, '').trim()}; see ebpfnet lb --help\n`),
    });

  const sub = (name: string): Command =>
    lb
      .command(name)
      .showHelpAfterError(false)
      .configureOutput({ outputError: (str, write) => write(`ebpfnet: lb ${name}: ${str.replace(/^error: /, '').trim()}; see ebpfnet lb ${name} --help\n`) });

  sub('attach')
    .description('load the balancer, attach it to a cgroup (and everything below it) and pin it, so it runs on after this command')
    .option('--cgroup <path>', 'cgroup v2 directory, absolute or relative to the cgroup v2 mount (default: the root: every process)')
    .action((opts: { cgroup?: string }) => {
      const r = attachBalancer({ cgroup: opts.cgroup });
      out(`lb: attached ${r.programs.length} programs to ${r.cgroup}; pinned at ${r.pinDir}${r.reusedMaps.length ? ' (kept the services already pinned there)' : ''}`);
    });

  withAgentOptions(
    sub('add')
      .description('create a service, or replace its backends, weights, states and affinity')
      .argument('<service>', 'VIP:PORT/PROTO, e.g. 10.96.0.10:80/tcp or [fd00::10]:53/udp')
      .option('-b, --backend <backend>', 'IP:PORT[,weight=N][,state=active|draining]; repeat for each backend (none: the service refuses connections)', collect, [])
      .option('--affinity [seconds]', 'session affinity: the same client network namespace gets the same backend for SECONDS (default 10800)'),
  ).action(async (service: string, opts: AgentOptions & { backend: string[]; affinity?: string | boolean }) => {
    const spec = makeService(service, opts.backend, opts.affinity, 'lb add');
    if (opts.agent) {
      const a = await lbThroughAgent.add(agentClient(opts), spec);
      out(`lb: ${a.created ? 'added' : 'updated'} ${a.view.service} through the agent: ${serviceLine(a.view)}`);
      return;
    }
    const r = withBalancer('lb add', (b) => {
      const res = b.upsert(spec);
      return { res, view: b.view(spec) };
    });
    const verb = r.res.summary.added.length ? 'added' : r.res.summary.changed.length ? 'updated' : 'unchanged';
    out(`lb: ${verb} ${r.view?.service ?? service}: ${r.view ? serviceLine(r.view) : ''}`);
  });

  withAgentOptions(
    sub('del')
      .description('delete a service: connections to its VIP are no longer translated')
      .argument('<service>', 'VIP:PORT/PROTO'),
  ).action(async (service: string, opts: AgentOptions) => {
    const addr = parseServiceAddr(service, 'lb del');
    if (opts.agent) {
      await lbThroughAgent.del(agentClient(opts), addr.name);
      out(`lb: deleted ${addr.name} through the agent`);
      return;
    }
    withBalancer('lb del', (b) => b.remove(addr));
    out(`lb: deleted ${service}`);
  });

  withOutputOption(withAgentOptions(sub('list').description('services, backends, weights, states, slots and connection counts'))).action(async (opts: AgentOptions & OutputOptions) => {
    const json = wantsJson(opts);
    if (opts.agent) {
      const v = await lbThroughAgent.list(agentClient(opts));
      if (json) return printJson(v);
      out(`balancer of the agent at ${opts.agent}, attached to ${v.cgroup} (revision ${v.revision})\n`);
      // a Kubernetes service is named `namespace/name:port` beside its VIP
      const named = v.services.map((s) => ({ ...serviceViewOf(s), service: `${s.id}${s.name ? ` (${s.name})` : ''}${s.shadowedBy ? ` (shadowed by ${s.shadowedBy})` : ''}` }));
      out(v.services.length ? listTable(named) : 'no services; add one with: ebpfnet lb add VIP:PORT/PROTO --backend IP:PORT --agent URL');
      return;
    }
    const { services, broken, status } = withBalancer('lb list', (b) => ({ ...b.list(), status: b.status() }));
    // Kubernetes' names, as the agent published them beside the pins (src/lb/names.ts)
    const names = readNames(status.pinDir);
    if (json) return printJson({ ...status, services: services.map((s) => ({ ...serviceJson(s), ...(names[s.service] ? { name: names[s.service] } : {}) })), broken });
    out(statusLine(status));
    out('');
    const shown = services.map((s) => (names[s.service] ? { ...s, service: `${s.service} (${names[s.service]})` } : s));
    out(services.length ? listTable(shown) : 'no services; add one with: ebpfnet lb add VIP:PORT/PROTO --backend IP:PORT');
    for (const s of broken) out(`\nWARNING ${s}: its slot table is incomplete (a change was interrupted); run lb add or lb apply for it again`);
  });

  withAgentOptions(
    sub('apply')
      .description('make the services in FILE the whole set, in one atomic switch')
      .argument('<file>', 'YAML or JSON file; - reads standard input')
      .option('--dry-run', 'print what would change, change nothing')
      .addHelpText('after', FILE_HELP),
  ).action(async (file: string, opts: AgentOptions & { dryRun?: boolean }) => {
    let text: string;
    try {
      text = readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (e) {
      throw new EbpfnetError('EBPFNET_USAGE', `lb apply ${file}`, `cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
    }
    const specs = parseServiceFile(text, file);
    const name = file === '-' ? 'standard input' : file;
    if (opts.agent) {
      refuseLocalFlags('lb apply', opts, { dryRun: '--dry-run' });
      const v = await lbThroughAgent.apply(agentClient(opts), specs);
      out(`lb: applied ${name} through the agent: ${v.services.length} service${v.services.length === 1 ? '' : 's'} (revision ${v.revision})`);
      return;
    }
    if (opts.dryRun) {
      const r = withBalancer('lb apply', (b) => b.plan(specs));
      out(`lb: ${name} would change: ${describeChange(r)}`);
      for (const s of r.steps) out(`  ${s}`);
      return;
    }
    const r = withBalancer('lb apply', (b) => b.apply(specs));
    out(`lb: applied ${name}: ${specs.length} service${specs.length === 1 ? '' : 's'} (${describeChange(r)})`);
  });

  withOutputOption(sub('explain').description('which backend a new connection to the service would get, and why').argument('<service>', 'VIP:PORT/PROTO')).action(
    (service: string, opts: OutputOptions) => {
      const json = wantsJson(opts);
      const addr = parseServiceAddr(service, 'lb explain');
      const e = withBalancer('lb explain', (b) => b.explain(addr));
      if (json) printJson(e);
      else out(explainText(e));
    },
  );

  sub('detach')
    .description('detach the balancer and remove its pins (other programs on the cgroup stay)')
    .action(() => {
      const r = detachBalancer();
      if (!r.attached && !r.maps.length) {
        out(`lb: nothing to detach (nothing pinned at ${r.pinDir})`);
        return;
      }
      out(`lb: detached ${r.programs.length} programs${r.cgroup ? ` from ${r.cgroup}` : ''}; removed ${r.maps.length} pinned maps from ${r.pinDir}`);
    });

  sub('metrics')
    .description('Prometheus metrics of the running balancer: print them once, or serve them with --listen')
    .option('--listen <[addr:]port>', 'serve http://ADDR:PORT/metrics until Ctrl-C')
    .action(async (opts: { listen?: string }) => {
      // loaded here: prom-client and the HTTP server are not for the other lb commands to compile
      const { newRegistry, parseListen, serveMetrics } = await import('../metrics/server.js');
      const { registerLbMetrics } = await import('../metrics/lb.js');
      if (opts.listen !== undefined) parseListen(opts.listen, '--listen');
      const b = Balancer.open({ op: 'lb metrics' });
      const registry = newRegistry();
      registerLbMetrics(registry, () => b.list().services);
      if (opts.listen === undefined) {
        try {
          process.stdout.write(await registry.metrics());
        } finally {
          b.close();
        }
        return;
      }
      const server = await serveMetrics(registry, opts.listen);
      out(`lb: serving metrics at ${server.url}; Ctrl-C to stop`);
      await new Promise<void>((resolve) => {
        onShutdown(async () => {
          await server.close();
          b.close();
          resolve();
        });
      });
    });
}
