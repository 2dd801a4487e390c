// SPDX-License-Identifier: Apache-2.0
// How the CLI shows things: aligned tables, and expected errors as one line without a stack.
import { ERROR_CODES, isEbpfnetError } from '../errors.js';

export function table(header: string[], rows: Array<Array<string | number | null>>): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (c === null ? '-' : String(c))))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()).join('\n');
}

/** Prints an error the way a person wants it and sets the exit code; a bug keeps its stack. */
export function handleError(e: unknown): void {
  if (isEbpfnetError(e)) {
    process.stderr.write(`ebpfnet: ${e.message}\n`);
    process.exitCode = ERROR_CODES[e.code].exit;
    return;
  }
  const err = e as { code?: string; exitCode?: number; message?: string; stack?: string };
  if (typeof err?.code === 'string' && err.code.startsWith('commander.')) {
    // commander already printed its message
    process.exitCode = err.exitCode === 0 ? 0 : 2;
    return;
  }
  process.stderr.write(`ebpfnet: internal error: ${err?.stack ?? String(e)}\n`);
  process.exitCode = 1;
}
