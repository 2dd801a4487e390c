// SPDX-License-Identifier: Apache-2.0
// `ebpfnet agent`: the long-running control plane. Reads the config, makes the kernel match the
// desired state (adopting pinned datapaths), then serves the HTTP API and /metrics until stopped.
// Stopping it (or kill -9) leaves the pinned datapaths running; `--cleanup` removes them.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Command } from 'commander';
import type { Registry } from 'prom-client';
import { Agent } from '../agent/agent.js';
import { checkNodeName, readConfig, type AgentConfig } from '../agent/config.js';
import { defaultNodeName } from '../agent/kubernetes.js';
import { checkLogFormat, checkLogLevel, createLogger, defaultLogFormat, LOG_FORMATS, LOG_LEVELS, type LogFormat, type Logger, type LogLevel } from '../agent/log.js';
import { DEFAULT_STATE_DIR } from '../agent/store.js';
import { isLoopback, loadToken } from '../agent/token.js';
import { buildApi } from '../api/app.js';
import { EbpfnetError, isEbpfnetError } from '../errors.js';
import { describeResolved } from '../filter/ifaces.js';
import { enableRunStats, mmapThreshold, onShutdown, requireRoot, setGuardReport, trimHeap } from '../loader/index.js';
import { registerBpfMetrics } from '../metrics/bpf.js';
import { registerFilterMetrics } from '../metrics/filter.js';
import { registerKubernetesMetrics } from '../metrics/kubernetes.js';
import { registerLbMetrics } from '../metrics/lb.js';
import { newRegistry, parseListen } from '../metrics/server.js';
import { registerTraceStreamMetrics, traceMetrics } from '../metrics/trace.js';

export const DEFAULT_LISTEN = '127.0.0.1:9900';

/** parseListen, plus port 0 (any free port: tests and benchmarks read the one chosen from stdout). */
function listenAddress(s: string): { host: string; port: number } {
  const any = /:0$/.test(s.trim());
  const a = parseListen(any ? s.trim().replace(/:0$/, ':1') : s, '--listen');
  return any ? { ...a, port: 0 } : a;
}

/** The balancer's and the tracer's metrics, read from the agent at scrape time. */
export function registerAgentLbTraceMetrics(registry: Registry, agent: Agent): void {
  registerLbMetrics(registry, () => agent.lb.sources(), (service) => agent.lb.kubernetesOrigin(service));
  if (!agent.trace.running) return;
  const m = traceMetrics(registry, agent.trace.syscalls, () => agent.trace.lost());
  agent.trace.observe((syscall, result) => m.observe(syscall, result));
  registerTraceStreamMetrics(registry, () => agent.trace.streams());
}

interface AgentOpts {
  config?: string;
  listen?: string;
  stateDir: string;
  cleanup?: boolean;
  logLevel?: LogLevel;
  logFormat?: LogFormat;
  kubeconfig?: string;
  nodeName?: string;
}

/**
 * The agent is a daemon with a memory budget (issue 8: 100,000 rules and 10,000 services under
 * 200 MB RSS). By default V8 lets the old generation grow to about 4 times what was live after the
 * last full GC (it sizes for a 4 GB heap limit): 35-50 MB live then sits at 170 MB and more of
 * garbage. The heap limit is unchanged either way, so a large PUT still fits. V8 reads these flags
 * where it decides, so setting them at run time takes effect.
 *
 * Start, the largest transient (the whole policy parsed and compiled at once), runs with
 * --optimize-for-size: the heap grows by at most 1.3 times. Once ready the agent runs with V8's
 * full optimizations again (under --optimize-for-size a one-rule PUT and a 10,000-rule scrape were
 * 20-30% slower), a heap that grows by 15%, and a young generation that stays at its first size:
 * a scrape of 10,000 services let it grow to its 16 MB semi-spaces, which V8 then keeps (RSS
 * 198-206 MB there without this, 169-194 MB with it; the price is more frequent scavenges, a
 * 10,000-rule scrape took 89 ms instead of 35). Measured with the soak's --big mode: the worst RSS
 * went from 270 MB to under 200 MB.
 */
const v8Phase = {
  starting: (): void => {
    setFlagsFromString('--optimize-for-size');
    // large buffers (batch writes of 100,000 entries, multi-megabyte responses) mapped and unmapped
    // as they come and go, not kept in glibc's heap once freed: 10-15 MB less at --big's steps
    mmapThreshold(128 << 10);
  },
  running: (): void => {
    setFlagsFromString('--no-optimize-for-size --heap-growing-percent=15 --semi-space-growth-factor=1');
    // Start is the largest transient (the whole policy parsed, compiled and written at once): its
    // garbage goes back to the system before serving, not whenever V8's memory reducer gets to it
    // (about 8 s later). With 100,000 rules this took the ready agent from 190-225 MB to 135-160.
    setFlagsFromString('--expose-gc');
    (runInNewContext('gc') as () => void)();
    trimHeap();
  },
};

async function runAgent(o: AgentOpts): Promise<void> {
  v8Phase.starting();
  const { api, log: logConfig, open } = readAgentConfig(o);
  // the command line over the config file; text on a terminal, JSON otherwise
  const format = o.logFormat ?? logConfig?.format ?? defaultLogFormat();
  const log = createLogger({ level: o.logLevel ?? logConfig?.level ?? 'info', format });
  setGuardReport((level, msg, err) => log[level]({ err }, msg));
  try {
    await serve(o, api, open, log);
  } catch (e) {
    // a collector reading the JSON (or journal) log sees why the agent is gone; the command's one
    // line on stderr follows, as for every command (text on a terminal: that line alone)
    if (format !== 'text') log.error({ code: isEbpfnetError(e) ? e.code : 'EBPFNET_KERNEL' }, `start failed: ${e instanceof Error ? e.message : String(e)}`);
    throw e;
  }
}

async function serve(o: AgentOpts, api: ReturnType<typeof readAgentConfig>['api'], open: ReturnType<typeof readAgentConfig>['open'], log: Logger): Promise<void> {
  const listen = o.listen ?? api.listen ?? DEFAULT_LISTEN;
  const { host, port } = listenAddress(listen);
  const remote = !isLoopback(host);
  if (remote && !api.token) {
    throw new EbpfnetError('EBPFNET_USAGE', 'agent', `refusing to listen on ${host}, beyond loopback, without a token set in the config file`, {
      hint: 'set api.token (16+ characters) in the config, or listen on 127.0.0.1',
    });
  }
  requireRoot('agent');
  const { token, source } = loadToken(o.stateDir, api.token);
  const registry = newRegistry();
  const agent = open(log);
  registerFilterMetrics(registry, () => agent.filter.sources());
  registerBpfMetrics(registry, () => agent.bpfSources(), () => agent.runStats.on);
  registerAgentLbTraceMetrics(registry, agent);
  if (agent.kubernetes) registerKubernetesMetrics(registry, agent.kubernetes);
  const app = await buildApi({ agent, registry, token, bodyLimit: api.bodyLimit, authReads: remote, logger: log });
  logStart(log, o, agent, source);
  try {
    // fastify logs each address it listens on: one `api:` line each
    await app.listen({ host, port, listenTextResolver: (url) => `api: ${url}/v1 (metrics: ${url}/metrics)` });
  } catch (e) {
    agent.close();
    const inUse = (e as NodeJS.ErrnoException).code === 'EADDRINUSE';
    throw new EbpfnetError(inUse ? 'EBPFNET_BUSY' : 'EBPFNET_USAGE', `listen on ${listen}`, inUse ? 'the address is in use' : (e as Error).message, { hint: 'choose another with --listen', cause: e });
  }
  v8Phase.running();
  log.info('ready');
  await new Promise<void>((resolve) => {
    onShutdown(async () => {
      log.info('stopping');
      await app.close();
      agent.close();
      log.info('stopped; the pinned datapaths keep running (ebpfnet agent --cleanup removes them)');
      resolve();
    });
  });
}

/** What the agent runs, as it starts: lifecycle lines at info, run statistics that failed at warn. */
function logStart(log: Logger, o: AgentOpts, agent: Agent, tokenSource: string): void {
  log.info(`state: ${o.stateDir} (revision ${agent.filter.revision})`);
  log.info(describeFilter(agent));
  for (const line of describeLbTrace(agent)) log.info(line);
  log.info(`token: ${tokenSource}`);
  const stats = agent.runStats;
  // off because enabling failed (not because it was never asked for): the metrics stand still
  if (stats.on) log.info(`bpf run statistics: ${stats.detail}`);
  else log.warn(`bpf run statistics: ${stats.detail}`);
}

/**
 * The config file's api section, and the agent's opening with the rest. The running agent keeps
 * no reference to the file's sections (a 100,000-rule filter section is ~10 MB): open() drops it.
 */
function readAgentConfig(o: AgentOpts): { api: AgentConfig['api']; log: AgentConfig['log']; open: (logger: Logger) => Agent } {
  let config: AgentConfig | null = o.config ? readConfig(o.config) : { api: {}, filter: null, lb: null, trace: null };
  // --kubeconfig and --node-name turn the Kubernetes sync on, and win over the config's section
  if (o.kubeconfig !== undefined || o.nodeName !== undefined) {
    const k = config.kubernetes ?? {};
    config.kubernetes = { ...k, ...(o.kubeconfig !== undefined ? { kubeconfig: o.kubeconfig } : {}), ...(o.nodeName !== undefined ? { nodeName: o.nodeName } : {}) };
  }
  return {
    api: config.api,
    log: config.log,
    open: (logger) => {
      const c = config!;
      config = null;
      // audit records go to the log (info), besides audit.log
      return Agent.open({ stateDir: o.stateDir, config: c, logger, runStats: enableRunStats });
    },
  };
}

/**
 * In a function of its own: the view copies every rule, and runAgent's frame lives as long as the
 * agent. Interfaces the filter could not take were logged (warn) as the agent tried them.
 */
function describeFilter(agent: Agent): string {
  const f = agent.filter.view();
  const t = agent.filter.targets();
  return `filter: ${f.interfaces.length ? `${describeResolved(t.resolved)}: ${f.rules.length} rules; default ${f.default}; connection state ${f.stateful ? 'on' : 'off'}` : 'no interfaces'}`;
}

function describeLbTrace(agent: Agent): string[] {
  const lb = agent.lb.configured ? agent.lb.view() : null;
  const t = agent.trace;
  return [`lb: ${lb ? `${lb.cgroup}: ${lb.services.length} service${lb.services.length === 1 ? '' : 's'}` : 'off'}`, `trace: ${t.running ? t.syscalls.join(', ') : 'off'}`, `kubernetes: ${agent.kubernetes ? `syncing (${agent.kubernetes.status().server})` : 'off'}`];
}

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('run the control plane: HTTP API, Prometheus metrics and durable policy for the datapaths')
    .option('--config <file>', 'YAML or JSON: filter, lb, trace and api sections')
    .option('--listen <[addr:]port>', `API address (default ${DEFAULT_LISTEN}, or api.listen from the config)`)
    .option('--state-dir <dir>', 'where the desired state, the token and the audit log live', DEFAULT_STATE_DIR)
    .option('--cleanup', 'detach and unpin every datapath the agent runs, then exit')
    .option('--log-level <level>', `${LOG_LEVELS.join(', ')} (default info, or log.level from the config); debug logs every request`, (v) => checkLogLevel(v, '--log-level'))
    .option('--kubeconfig <file>', 'be this node\'s Kubernetes service proxy: Services and EndpointSlices from the cluster this kubeconfig names (default: $KUBECONFIG, the pod\'s service account, ~/.kube/config; or kubernetes.kubeconfig in the config)')
    .option('--node-name <name>', `this node's name in the Kubernetes API (default: the host name, ${defaultNodeName()}; or kubernetes.nodeName); turns the Kubernetes sync on`, (v) => checkNodeName(v, '--node-name'))
    .option('--log-format <format>', `${LOG_FORMATS.join(', ')} (default text on a terminal, json otherwise, or log.format from the config)`, (v) => checkLogFormat(v, '--log-format'))
    .action(async (o: AgentOpts) => {
      if (o.cleanup) {
        requireRoot('agent --cleanup');
        const gone = Agent.cleanup(o.stateDir);
        process.stdout.write(gone.length ? `${gone.map((g) => `${g}: detached and unpinned`).join('\n')}\n` : 'nothing to clean up\n');
        return;
      }
      await runAgent(o);
    });
}
