// SPDX-License-Identifier: Apache-2.0
// The agent's logger: one pino instance, shared by the agent and its HTTP API (fastify's
// loggerInstance). Library code logs through the logger it is given and never prints; without one
// it gets silentLogger(). The `agent` command makes one with createLogger().
import { pino, type DestinationStream, type Logger } from 'pino';
import { EbpfnetError } from '../errors.js';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * json: one JSON object per line (level, time, msg, fields), for a collector;
 * text: `12:00:01.234 INFO  msg key=value`, for a person at a terminal;
 * journal: `<6>msg key=value`, for journald, which adds the time itself and reads the `<N>` prefix
 * as the line's priority (sd-daemon(3)), so `journalctl -p warning` works.
 */
export const LOG_FORMATS = ['json', 'text', 'journal'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Where secrets could sit in a record; their values are replaced, should anything log them. */
export const REDACTED_PATHS = ['token', '*.token', 'api.token', 'config.api.token', 'authorization', 'headers.authorization', 'req.headers.authorization', 'req.headers.cookie'];

/** A logger that drops everything: what the agent and the API use when given none. */
export const silentLogger = (): Logger => pino({ level: 'silent' });

export function checkLogLevel(v: unknown, where: string): LogLevel {
  if (typeof v === 'string' && (LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevel;
  throw new EbpfnetError('EBPFNET_USAGE', where, `'${String(v)}' is not a log level`, { hint: `use one of ${LOG_LEVELS.join(', ')}` });
}

export function checkLogFormat(v: unknown, where: string): LogFormat {
  if (typeof v === 'string' && (LOG_FORMATS as readonly string[]).includes(v)) return v as LogFormat;
  throw new EbpfnetError('EBPFNET_USAGE', where, `'${String(v)}' is not a log format`, { hint: `use one of ${LOG_FORMATS.join(', ')}` });
}

/** text on a terminal, JSON otherwise (a pipe, a file, journald when the unit does not say). */
export const defaultLogFormat = (out: { isTTY?: boolean } = process.stdout): LogFormat => (out.isTTY ? 'text' : 'json');

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** where finished lines go (default: the process's stdout) */
  write?: (line: string) => void;
}

const LABELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
/** syslog priorities: crit, err, warning, info, debug */
const PRIORITY: Record<number, number> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 };
const OMITTED = new Set(['level', 'time', 'pid', 'hostname', 'msg']);

/** `key=value` for the fields beside msg: strings bare unless they need quotes, the rest as JSON. */
function fields(r: Record<string, unknown>): string {
  let s = '';
  for (const [k, v] of Object.entries(r)) {
    if (OMITTED.has(k) || v === undefined) continue;
    const err = k === 'err' && typeof v === 'object' && v !== null ? (v as { message?: unknown }).message : undefined;
    const shown = err !== undefined ? String(err) : v;
    s += ` ${k}=${typeof shown === 'string' && /^[^\s"=]+$/.test(shown) ? shown : JSON.stringify(shown)}`;
  }
  return s;
}

/** One pino JSON line as a text or journal line. */
export function formatLine(json: string, format: 'text' | 'journal'): string {
  const r = JSON.parse(json) as Record<string, unknown> & { level: number | string; time?: string; msg?: string };
  const n = typeof r.level === 'number' ? r.level : Number(Object.entries(LABELS).find(([, l]) => l === r.level)?.[0] ?? 30);
  const text = `${r.msg ?? ''}${fields(r)}`;
  if (format === 'journal') return `<${PRIORITY[n] ?? 6}>${text.replace(/\n/g, ' ')}\n`;
  const t = typeof r.time === 'string' ? r.time.slice(11, 23) : '';
  return `${t} ${(LABELS[n] ?? String(n)).toUpperCase().padEnd(5)} ${text}\n`;
}

/**
 * The agent's logger. Records carry the level's name (`"level":"info"`), an ISO time (left out in
 * the journal format: journald has its own) and the process id; REDACTED_PATHS are censored.
 */
export function createLogger(o: LoggerOptions = {}): Logger {
  const format = o.format ?? defaultLogFormat();
  const write = o.write ?? ((line: string) => void process.stdout.write(line));
  const dest: DestinationStream = format === 'json' ? { write } : { write: (line) => write(formatLine(line, format)) };
  return pino(
    {
      level: o.level ?? 'info',
      base: { pid: process.pid },
      timestamp: format === 'journal' ? false : pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    dest,
  );
}
