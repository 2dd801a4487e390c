// SPDX-License-Identifier: Apache-2.0
// The agent's configuration file (YAML or JSON): what it should run at start. Checked completely
// before anything is touched, so a typo is one line and exit 2, never half an agent.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseDocument, type YAMLError } from 'yaml';
import { EbpfnetError, shownValue } from '../errors.js';
import { parseCtMax } from '../filter/ct-table.js';
import { checkPattern, splitPatterns } from '../filter/ifaces.js';
import type { Action } from '../filter/rules.js';
import { formatMatch, parseRuleLine } from '../filter/rules.js';
import { parseServiceList } from '../lb/file.js';
import type { ServiceSpec } from '../lb/model.js';
import { traceSettings, type TracePlan } from '../trace/options.js';
import { duplicateKey, jsonChunks } from './json.js';
import { checkLogFormat, checkLogLevel, type LogFormat, type LogLevel } from './log.js';

export type AttachMode = 'native' | 'generic' | 'auto';

export interface FilterConfig {
  /** interface names, globs (`veth*`) and `all`, as --iface takes them */
  interfaces: string[];
  rules: Array<{ action: Action; match: string }>;
  default: Action;
  audit: boolean;
  hook: 'xdp' | 'tc';
  mode: AttachMode;
  /** per-rule counter slots, fixed when a filter is loaded */
  maxRules: number;
  /** the connection table's size in flows (--ct-max), fixed when a filter is loaded; absent: the default */
  ctMax?: number;
  /** track connections (replies to what the host opened pass); absent: on under default deny */
  stateful?: boolean;
}

export interface ApiConfig {
  listen?: string;
  token?: string;
  bodyLimit?: number;
}

/** `log:`; the command line's --log-level and --log-format win over it. */
export interface LogConfig {
  level?: LogLevel;
  format?: LogFormat;
}

export interface AgentConfig {
  api: ApiConfig;
  log?: LogConfig;
  filter: FilterConfig | null;
  lb: LbConfig | null;
  trace: TraceConfig | null;
  /** the node's service proxy (src/agent/kubernetes.ts); null: off */
  kubernetes?: KubernetesConfig | null;
}

/** `kubernetes:`; --kubeconfig and --node-name win over it (and turn it on without it). */
export interface KubernetesConfig {
  /** a kubeconfig file; absent: $KUBECONFIG, the pod's service account, ~/.kube/config */
  kubeconfig?: string;
  /** this node's name in the API (NodePort addresses, internalTrafficPolicy: Local); absent: the host name */
  nodeName?: string;
}

/** The balancer: the cgroup it translates connections for, and its services. */
export interface LbConfig {
  /** cgroup v2 directory, absolute or relative to the mount; null: the root (every process) */
  cgroup: string | null;
  services: ServiceSpec[];
}

/** The tracer: on or off, and the same filters as `ebpfnet trace`. */
export interface TraceConfig {
  enabled: boolean;
  plan: TracePlan;
}

export const DEFAULT_MAX_RULES = 16384;

const bad = (file: string, detail: string, hint?: string): EbpfnetError => new EbpfnetError('EBPFNET_USAGE', `read config ${file}`, detail, { hint });

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function only(file: string, where: string, o: Record<string, unknown>, keys: string[]): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw bad(file, `${where}: unknown key '${k}'`, `known keys: ${keys.join(', ')}`);
}

/** `deny tcp/22` -> {action, match}; the match goes through the one rule grammar. */
/**
 * JSON is YAML, and a JSON file reads to the same value through JSON.parse, without building a YAML
 * document: about 100 times faster and with no transient memory for large rule lists (the yaml
 * library holds about 1.5 KB per list item while it parses). Duplicate names fall through to the
 * YAML parser, which refuses them as it always did. Null when the text is not JSON.
 */
function parseJson(text: string): { value: unknown } | null {
  if (!/^\s*[{[]/.test(text)) return null;
  try {
    const value: unknown = JSON.parse(text);
    return duplicateKey(text) === null ? { value } : null;
  } catch {
    return null;
  }
}

/**
 * A YAML syntax error as one line, `FILE:LINE:COLUMN: what: "the line"` (the last line with text
 * when the parser stopped at the end of the file: an unclosed bracket or quote). The yaml
 * package's own message puts the position and a caret snippet on lines of their own.
 */
export function yamlProblem(e: YAMLError | Error, text: string, file: string): EbpfnetError {
  const first = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
  const what = `${first.charAt(0).toLowerCase()}${first.slice(1)}`;
  const pos = (e as YAMLError).linePos?.[0];
  if (!pos) return bad(file, what);
  const lines = text.split(/\r?\n/);
  let n = pos.line;
  while (n > 1 && !(lines[n - 1] ?? '').trim()) n--;
  const line = (lines[n - 1] ?? '').trimEnd();
  // a long line (a JSON file on one line) as the stretch around the column
  const from = line.length > 120 && n === pos.line ? Math.max(0, pos.col - 60) : 0;
  const part = line.slice(from, from + 120);
  // quoted as it is, unless it holds a tab or another control character (then JSON shows it)
  const quoted = /[\u0000-\u001f]/.test(part) ? JSON.stringify(part) : `'${part}'`;
  const shown = `${from > 0 ? '...' : ''}${quoted}${from + 120 < line.length ? '...' : ''}`;
  return bad(`${file}:${pos.line}:${pos.col}`, `${what}: ${n === pos.line ? shown : `at the end of the file, after line ${n} ${shown}`}`);
}

/**
 * YAML, with its warnings (an unknown tag: `!!intt 5`) refused like its errors: the yaml package
 * would print them to stderr itself (process.emitWarning) and go on with a guess.
 */
function parseYamlStrict(text: string): unknown {
  const doc = parseDocument(text);
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) throw problem;
  return doc.toJS();
}

/** `filter.rules[3]` as the YAML path ['filter', 'rules', 3]. */
const pathKeys = (path: string): Array<string | number> => [...path.matchAll(/([A-Za-z_][\w-]*)|\[(\d+)\]/g)].map((m) => (m[2] === undefined ? m[1] : Number(m[2])));

/**
 * The line a config error's path is on (`read config F: filter.rules[3]: ...` becomes
 * `read config F:9: filter.rules[3]: ...`, the form editors jump to),
 * found by parsing the text again as a YAML document: only once something is wrong, and only for
 * files small enough that a second parse costs little.
 */
function withLine(e: unknown, text: string, file: string): unknown {
  if (!(e instanceof EbpfnetError) || text.length > 4 << 20) return e;
  const head = `read config ${file}: `;
  if (!e.message.startsWith(head)) return e;
  const m = /^([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*)(?=: )/.exec(e.message.slice(head.length));
  if (!m) return e;
  try {
    const doc = parseDocument(text);
    const node = doc.getIn(pathKeys(m[1]), true) as { range?: [number, number, number] } | undefined;
    const start = node?.range?.[0];
    if (start === undefined) return e;
    const line = text.slice(0, start).split('\n').length;
    e.message = `read config ${file}:${line}: ${e.message.slice(head.length)}`;
  } catch {
    // the error as it was
  }
  return e;
}

export function parseConfig(text: string, file = 'config'): AgentConfig {
  let raw: unknown;
  try {
    raw = parseJson(text)?.value ?? parseYamlStrict(text) ?? {};
  } catch (e) {
    throw yamlProblem(e as Error, text, file);
  }
  try {
    return parseValue(raw, file);
  } catch (e) {
    throw withLine(e, text, file);
  }
}

/**
 * A rule, a pattern or an entry read by another room's parser: its error, whatever operation it
 * names, becomes the config's, with the path and the text at fault.
 */
function within<T>(file: string, path: string, shown: string | null, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (!(e instanceof EbpfnetError)) throw e;
    const detail = e.message.startsWith(`${e.op}: `) ? e.message.slice(e.op.length + 2) : e.message;
    throw new EbpfnetError(e.code, `read config ${file}`, `${path}: ${shown === null ? '' : `'${shown}': `}${detail}`, { cause: e });
  }
}

/** A list of strings, each wrong item named by its index. */
function stringList(file: string, path: string, v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad(file, `${path} must be a list of ${what}, not ${shownValue(v)}`);
  v.forEach((x, i) => {
    if (typeof x !== 'string') throw bad(file, `${path}[${i}]: ${shownValue(x)} is not a string; write ${what} as strings`);
  });
  return v as string[];
}

function parseValue(raw: unknown, file: string): AgentConfig {
  if (!isObj(raw)) throw bad(file, 'the top level is not a mapping', 'start with api:, log:, filter:, lb:, trace: or kubernetes:');
  only(file, 'top level', raw, ['api', 'log', 'filter', 'lb', 'trace', 'kubernetes']);
  const api: ApiConfig = {};
  if (raw.api !== undefined) {
    if (!isObj(raw.api)) throw bad(file, `api is not a mapping (it is ${shownValue(raw.api)})`);
    only(file, 'api', raw.api, ['listen', 'token', 'bodyLimit']);
    if (raw.api.listen !== undefined) {
      // a port number or an [ADDR:]PORT string; anything else would become '[object Object]'
      if (typeof raw.api.listen !== 'string' && typeof raw.api.listen !== 'number') throw bad(file, `api.listen: ${shownValue(raw.api.listen)} is not [ADDR:]PORT`, 'for example 127.0.0.1:9900');
      api.listen = String(raw.api.listen);
    }
    if (raw.api.token !== undefined) {
      // the value itself is never shown: it is a secret
      if (typeof raw.api.token !== 'string' || raw.api.token.length < 16) throw bad(file, `api.token: must be a string of at least 16 characters (it is ${typeof raw.api.token === 'string' ? `${raw.api.token.length} characters` : `a ${typeof raw.api.token}`})`);
      api.token = raw.api.token;
    }
    if (raw.api.bodyLimit !== undefined) {
      if (!Number.isInteger(raw.api.bodyLimit) || (raw.api.bodyLimit as number) < 1024) throw bad(file, `api.bodyLimit: ${shownValue(raw.api.bodyLimit)} is not an integer number of bytes >= 1024`);
      api.bodyLimit = raw.api.bodyLimit as number;
    }
  }
  const log: LogConfig = {};
  if (raw.log !== undefined && raw.log !== null) {
    if (!isObj(raw.log)) throw bad(file, `log is not a mapping (it is ${shownValue(raw.log)})`, 'for example log: {level: info, format: json}');
    only(file, 'log', raw.log, ['level', 'format']);
    if (raw.log.level !== undefined) log.level = within(file, 'log.level', null, () => checkLogLevel(raw.log && (raw.log as Record<string, unknown>).level, 'level'));
    if (raw.log.format !== undefined) log.format = within(file, 'log.format', null, () => checkLogFormat((raw.log as Record<string, unknown>).format, 'format'));
  }
  let filter: FilterConfig | null = null;
  if (raw.filter !== undefined && raw.filter !== null) {
    const f = raw.filter;
    if (!isObj(f)) throw bad(file, `filter is not a mapping (it is ${shownValue(f)})`);
    only(file, 'filter', f, ['interfaces', 'rules', 'default', 'audit', 'hook', 'mode', 'maxRules', 'ctMax', 'stateful']);
    const given = stringList(file, 'filter.interfaces', f.interfaces, "interface names, globs ('veth*') or all");
    // the same forms as --iface: names, comma-separated lists, globs and `all`
    given.forEach((g, i) => {
      for (const p of splitPatterns([g])) checkPattern(p, `read config ${file}: filter.interfaces${given.length > 1 ? `[${i}]` : ''}`);
    });
    const ifs = splitPatterns(given);
    const rules = stringList(file, 'filter.rules', f.rules, "'deny RULE' or 'allow RULE'");
    const def = f.default ?? 'allow';
    if (def !== 'allow' && def !== 'deny') throw bad(file, `filter.default: '${shownValue(def)}' is not allow or deny`);
    const hook = f.hook ?? 'xdp';
    if (hook !== 'xdp' && hook !== 'tc') throw bad(file, `filter.hook: '${shownValue(hook)}' is not xdp or tc`);
    const mode = f.mode ?? 'auto';
    if (mode !== 'native' && mode !== 'generic' && mode !== 'auto') throw bad(file, `filter.mode: '${shownValue(mode)}' is not native, generic or auto`);
    // YAML 1.2 reads `audit: yes` as the string "yes": refuse it rather than run without audit
    if (f.audit !== undefined && f.audit !== null && typeof f.audit !== 'boolean') throw bad(file, `filter.audit: '${shownValue(f.audit)}' is not true or false`);
    if (f.stateful !== undefined && f.stateful !== null && typeof f.stateful !== 'boolean') throw bad(file, `filter.stateful: '${shownValue(f.stateful)}' is not true or false`, 'leave it out to track connections exactly when filter.default is deny');
    const maxRules = f.maxRules ?? DEFAULT_MAX_RULES;
    if (!Number.isInteger(maxRules) || (maxRules as number) < 1 || (maxRules as number) > 1 << 20) throw bad(file, `filter.maxRules: ${shownValue(maxRules)} is not an integer from 1 to 1048576`);
    // the same limit as the API's (AgentFilter.maxRules): a policy the agent could not take over HTTP is not started from a file either
    if ((rules as unknown[]).length > (maxRules as number)) throw bad(file, `filter.rules has ${(rules as unknown[]).length} rules, more than filter.maxRules (${maxRules as number})`, 'raise filter.maxRules');
    const ctMax = f.ctMax === undefined || f.ctMax === null ? undefined : within(file, 'filter.ctMax', null, () => parseCtMax(f.ctMax, 'ctMax'));
    filter = {
      ...(ctMax !== undefined ? { ctMax } : {}),
      interfaces: ifs,
      rules: rules.map((r, i) =>
        within(file, `filter.rules[${i}]`, r, () => {
          const rule = parseRuleLine(r);
          return { action: rule.action, match: formatMatch(rule) };
        }),
      ),
      default: def,
      audit: f.audit === true,
      hook,
      mode,
      maxRules: maxRules as number,
      // absent when not given: the config's fingerprint stays that of a file without the key
      ...(typeof f.stateful === 'boolean' ? { stateful: f.stateful } : {}),
    };
  }
  const section = (k: 'lb' | 'trace'): Record<string, unknown> | null => {
    const v = raw[k];
    if (v === undefined || v === null) return null;
    if (!isObj(v)) throw bad(file, `${k} is not a mapping (it is ${shownValue(v)})`);
    return v;
  };
  const lb = section('lb');
  const trace = section('trace');
  return { api, log, filter, lb: lb && parseLbSection(lb, file), trace: trace && parseTraceSection(trace, file), kubernetes: parseKubernetesSection(raw.kubernetes, file) };
}

/** A DNS-1123 subdomain, as Kubernetes names nodes. */
const NODE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function checkNodeName(v: unknown, where: string): string {
  if (typeof v !== 'string' || v.length > 253 || !NODE_NAME.test(v)) {
    throw new EbpfnetError('EBPFNET_USAGE', where, `'${shownValue(v)}' is not a Kubernetes node name`, { hint: "lower-case letters, digits, '-' and '.', as `kubectl get nodes` shows them" });
  }
  return v;
}

/** `kubernetes:` (null, or `{}` for every default). */
function parseKubernetesSection(v: unknown, file: string): KubernetesConfig | null {
  if (v === undefined || v === null) return null;
  if (!isObj(v)) throw bad(file, `kubernetes is not a mapping (it is ${shownValue(v)})`, 'for example kubernetes: {kubeconfig: /root/.kube/config, nodeName: node-a}, or kubernetes: {} for the defaults');
  only(file, 'kubernetes', v, ['kubeconfig', 'nodeName']);
  const k: KubernetesConfig = {};
  if (v.kubeconfig !== undefined) {
    if (typeof v.kubeconfig !== 'string' || !v.kubeconfig.trim()) throw bad(file, `kubernetes.kubeconfig: ${shownValue(v.kubeconfig)} is not a file path`);
    k.kubeconfig = v.kubeconfig.trim();
  }
  if (v.nodeName !== undefined) k.nodeName = within(file, 'kubernetes.nodeName', null, () => checkNodeName(v.nodeName, 'nodeName'));
  return k;
}

/** `lb:` with `cgroup` and `services` in the `lb apply` file's form, read by the same parser. */
function parseLbSection(v: Record<string, unknown>, file: string): LbConfig {
  only(file, 'lb', v, ['cgroup', 'services']);
  if (v.cgroup !== undefined && (typeof v.cgroup !== 'string' || !v.cgroup.trim())) throw bad(file, `lb.cgroup: '${shownValue(v.cgroup)}' is not a cgroup v2 directory (absolute, or relative to the cgroup v2 mount)`);
  return { cgroup: typeof v.cgroup === 'string' ? v.cgroup.trim() : null, services: parseServiceList(v.services, `read config ${file}`, 'lb.services') };
}

const TRACE_KEYS = ['enabled', 'syscall', 'pid', 'uid', 'name', 'failed', 'cgroup', 'container', 'bufferSize'];

/** `trace:` with `enabled` and the options of `ebpfnet trace`, read by the same parser. */
function parseTraceSection(v: Record<string, unknown>, file: string): TraceConfig {
  only(file, 'trace', v, TRACE_KEYS);
  for (const k of ['enabled', 'failed']) if (v[k] !== undefined && typeof v[k] !== 'boolean') throw bad(file, `trace.${k}: ${shownValue(v[k])} is not true or false`);
  for (const k of ['syscall', 'pid', 'uid', 'name', 'cgroup', 'container', 'bufferSize']) {
    if (v[k] !== undefined && typeof v[k] !== 'string' && typeof v[k] !== 'number') throw bad(file, `trace.${k}: ${shownValue(v[k])} is not a string or a number`);
  }
  const str = (k: string): string | undefined => (v[k] === undefined ? undefined : String(v[k]));
  const raw = { pid: str('pid'), uid: str('uid'), name: str('name'), failed: v.failed === true, cgroup: str('cgroup'), container: str('container'), bufferSize: str('bufferSize') };
  return { enabled: v.enabled !== false, plan: traceSettings(str('syscall') ?? 'mkdir', raw, `read config ${file}`, {}, 'trace') };
}

export function readConfig(file: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw bad(file, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message);
  }
  return parseConfig(text, file);
}

/** A fingerprint of one section, so the agent knows when the file changed since the state was written. */
export const sectionHash = (v: unknown): string => {
  // the same digest as of JSON.stringify(v), fed in chunks: no 5 MB string for 100,000 rules
  const h = createHash('sha256');
  for (const chunk of jsonChunks(v ?? null)) h.update(chunk);
  return h.digest('hex').slice(0, 16);
};
