// SPDX-License-Identifier: Apache-2.0
// The agent's configuration file (YAML or JSON): what it should run at start. Checked completely
// before anything is touched, so a typo is one line and exit 2, never half an agent.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { EbpfnetError, shownValue } from '../errors.js';
import { checkPattern, splitPatterns } from '../filter/ifaces.js';
import type { Action } from '../filter/rules.js';
import { parseRule, formatMatch } from '../filter/rules.js';
import { parseServiceList } from '../lb/file.js';
import type { ServiceSpec } from '../lb/model.js';
import { traceSettings, type TracePlan } from '../trace/options.js';
import { duplicateKey, jsonChunks } from './json.js';

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
}

export interface ApiConfig {
  listen?: string;
  token?: string;
  bodyLimit?: number;
}

export interface AgentConfig {
  api: ApiConfig;
  filter: FilterConfig | null;
  lb: LbConfig | null;
  trace: TraceConfig | null;
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
export function parseRuleLine(line: string, where: string): { action: Action; match: string } {
  const m = /^\s*(deny|allow)\s+(.+)$/.exec(line);
  if (!m) throw new EbpfnetError('EBPFNET_USAGE', `parse ${where}`, `'${line}' is not 'deny RULE' or 'allow RULE'`, { hint: 'for example: deny tcp/22' });
  // a literal, not the regex's copy of it: one string for every rule's action
  const r = parseRule(m[1] === 'deny' ? 'deny' : 'allow', m[2]);
  return { action: r.action, match: formatMatch(r) };
}

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

export function parseConfig(text: string, file = 'config'): AgentConfig {
  let raw: unknown;
  try {
    raw = parseJson(text)?.value ?? parseYaml(text) ?? {};
  } catch (e) {
    throw bad(file, (e as Error).message.split('\n')[0].toLowerCase());
  }
  if (!isObj(raw)) throw bad(file, 'the top level is not a mapping');
  only(file, 'top level', raw, ['api', 'filter', 'lb', 'trace']);
  const api: ApiConfig = {};
  if (raw.api !== undefined) {
    if (!isObj(raw.api)) throw bad(file, 'api is not a mapping');
    only(file, 'api', raw.api, ['listen', 'token', 'bodyLimit']);
    if (raw.api.listen !== undefined) {
      // a port number or an [ADDR:]PORT string; anything else would become '[object Object]'
      if (typeof raw.api.listen !== 'string' && typeof raw.api.listen !== 'number') throw bad(file, 'api.listen must be [ADDR:]PORT, e.g. 127.0.0.1:9900');
      api.listen = String(raw.api.listen);
    }
    if (raw.api.token !== undefined) {
      if (typeof raw.api.token !== 'string' || raw.api.token.length < 16) throw bad(file, 'api.token must be a string of at least 16 characters');
      api.token = raw.api.token;
    }
    if (raw.api.bodyLimit !== undefined) {
      if (!Number.isInteger(raw.api.bodyLimit) || (raw.api.bodyLimit as number) < 1024) throw bad(file, 'api.bodyLimit must be an integer number of bytes >= 1024');
      api.bodyLimit = raw.api.bodyLimit as number;
    }
  }
  let filter: FilterConfig | null = null;
  if (raw.filter !== undefined && raw.filter !== null) {
    const f = raw.filter;
    if (!isObj(f)) throw bad(file, 'filter is not a mapping');
    only(file, 'filter', f, ['interfaces', 'rules', 'default', 'audit', 'hook', 'mode', 'maxRules']);
    const given = f.interfaces ?? [];
    if (!Array.isArray(given) || !given.every((i) => typeof i === 'string')) throw bad(file, "filter.interfaces must be a list of interface names, globs ('veth*') or all");
    // the same forms as --iface: names, comma-separated lists, globs and `all`
    const ifs = splitPatterns(given as string[]);
    for (const p of ifs) checkPattern(p, `read config ${file}: filter.interfaces`);
    const rules = f.rules ?? [];
    if (!Array.isArray(rules) || !rules.every((r) => typeof r === 'string')) throw bad(file, "filter.rules must be a list of 'deny RULE' / 'allow RULE' strings");
    const def = f.default ?? 'allow';
    if (def !== 'allow' && def !== 'deny') throw bad(file, `filter.default '${shownValue(def)}' is not allow or deny`);
    const hook = f.hook ?? 'xdp';
    if (hook !== 'xdp' && hook !== 'tc') throw bad(file, `filter.hook '${shownValue(hook)}' is not xdp or tc`);
    const mode = f.mode ?? 'auto';
    if (mode !== 'native' && mode !== 'generic' && mode !== 'auto') throw bad(file, `filter.mode '${shownValue(mode)}' is not native, generic or auto`);
    // YAML 1.2 reads `audit: yes` as the string "yes": refuse it rather than run without audit
    if (f.audit !== undefined && f.audit !== null && typeof f.audit !== 'boolean') throw bad(file, `filter.audit '${shownValue(f.audit)}' is not true or false`);
    const maxRules = f.maxRules ?? DEFAULT_MAX_RULES;
    if (!Number.isInteger(maxRules) || (maxRules as number) < 1 || (maxRules as number) > 1 << 20) throw bad(file, 'filter.maxRules must be an integer from 1 to 1048576');
    // the same limit as the API's (Agent.maxRules): a policy the agent could not take over HTTP is not started from a file either
    if ((rules as unknown[]).length > (maxRules as number)) throw bad(file, `filter.rules has ${(rules as unknown[]).length} rules, more than filter.maxRules (${maxRules as number})`, 'raise filter.maxRules');
    filter = {
      interfaces: ifs,
      rules: (rules as string[]).map((r, i) => parseRuleLine(r, `${file}: filter.rules[${i}]`)),
      default: def,
      audit: f.audit === true,
      hook,
      mode,
      maxRules: maxRules as number,
    };
  }
  const section = (k: 'lb' | 'trace'): Record<string, unknown> | null => {
    const v = raw[k];
    if (v === undefined || v === null) return null;
    if (!isObj(v)) throw bad(file, `${k} is not a mapping`);
    return v;
  };
  const lb = section('lb');
  const trace = section('trace');
  return { api, filter, lb: lb && parseLbSection(lb, file), trace: trace && parseTraceSection(trace, file) };
}

/** `lb:` with `cgroup` and `services` in the `lb apply` file's form, read by the same parser. */
function parseLbSection(v: Record<string, unknown>, file: string): LbConfig {
  only(file, 'lb', v, ['cgroup', 'services']);
  if (v.cgroup !== undefined && (typeof v.cgroup !== 'string' || !v.cgroup.trim())) throw bad(file, 'lb.cgroup must be a cgroup v2 directory (absolute, or relative to the cgroup v2 mount)');
  return { cgroup: typeof v.cgroup === 'string' ? v.cgroup.trim() : null, services: parseServiceList(v.services, `read config ${file}`, 'lb.services') };
}

const TRACE_KEYS = ['enabled', 'syscall', 'pid', 'uid', 'name', 'failed', 'cgroup', 'container', 'bufferSize'];

/** `trace:` with `enabled` and the options of `ebpfnet trace`, read by the same parser. */
function parseTraceSection(v: Record<string, unknown>, file: string): TraceConfig {
  only(file, 'trace', v, TRACE_KEYS);
  for (const k of ['enabled', 'failed']) if (v[k] !== undefined && typeof v[k] !== 'boolean') throw bad(file, `trace.${k} must be true or false`);
  for (const k of ['syscall', 'pid', 'uid', 'name', 'cgroup', 'container', 'bufferSize']) {
    if (v[k] !== undefined && typeof v[k] !== 'string' && typeof v[k] !== 'number') throw bad(file, `trace.${k} must be a string or a number`);
  }
  const str = (k: string): string | undefined => (v[k] === undefined ? undefined : String(v[k]));
  const raw = { pid: str('pid'), uid: str('uid'), name: str('name'), failed: v.failed === true, cgroup: str('cgroup'), container: str('container'), bufferSize: str('bufferSize') };
  return { enabled: v.enabled !== false, plan: traceSettings(str('syscall') ?? 'mkdir', raw, `read config ${file}: trace`) };
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
