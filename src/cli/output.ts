// SPDX-License-Identifier: Apache-2.0
// `-o, --output json|text` and its alias `--json`: the one way every command that prints state is
// asked for machine-readable output. Defined here once so the spelling, the help text and the
// error for an unknown format cannot drift between commands.
import { Option, type Command } from 'commander';
import { EbpfnetError } from '../errors.js';

export type OutputFormat = 'json' | 'text';

export const OUTPUT_FORMATS: readonly OutputFormat[] = ['json', 'text'];

export interface OutputOptions {
  output?: OutputFormat;
  json?: boolean;
}

/** Marks a command as one that prints state (the commander tree test walks for it). */
const PRINTS_STATE = Symbol('ebpfnet.printsState');

/** The format a typed value names; `synonyms` keeps an older spelling working (trace's `table`). */
export function parseOutputFormat(value: string, synonyms: Readonly<Record<string, OutputFormat>> = {}): OutputFormat {
  const v = value.trim().toLowerCase();
  if ((OUTPUT_FORMATS as readonly string[]).includes(v)) return v as OutputFormat;
  if (Object.hasOwn(synonyms, v)) return synonyms[v];
  const accepted = [...OUTPUT_FORMATS, ...Object.keys(synonyms)].join(', ');
  throw new EbpfnetError('EBPFNET_USAGE', 'parse --output', `'${value}' is not an output format (${accepted})`, { hint: 'use -o json or -o text' });
}

/**
 * Adds `-o, --output <format>` (json or text, default text) and `--json` (the same as -o json).
 * An unknown format is a usage error (exit 2) before the command does anything.
 */
export function withOutputOption(c: Command, o: { synonyms?: Readonly<Record<string, OutputFormat>>; json?: string } = {}): Command {
  const synonyms = o.synonyms ?? {};
  const extra = Object.keys(synonyms).map((k) => `; ${k} is the same as ${synonyms[k]}`).join('');
  c.addOption(new Option('-o, --output <format>', `json or text (default: text)${extra}`).argParser((v) => parseOutputFormat(v, synonyms)));
  c.addOption(new Option('--json', o.json ? `the same as -o json: ${o.json}` : 'the same as -o json'));
  (c as unknown as Record<symbol, boolean>)[PRINTS_STATE] = true;
  return c;
}

/** What the user asked for; `--json` with `-o text` contradicts itself and is refused. */
export function outputFormat(opts: OutputOptions): OutputFormat {
  if (opts.json && opts.output === 'text') throw new EbpfnetError('EBPFNET_USAGE', 'parse --output', '--json and -o text ask for two formats', { hint: 'give one of them' });
  return opts.json ? 'json' : (opts.output ?? 'text');
}

export const wantsJson = (opts: OutputOptions): boolean => outputFormat(opts) === 'json';

/** Whether withOutputOption() was applied to this command. */
export const printsState = (c: Command): boolean => (c as unknown as Record<symbol, boolean>)[PRINTS_STATE] === true;

/** One JSON document on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
