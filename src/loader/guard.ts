// SPDX-License-Identifier: Apache-2.0
// The exit guard: whatever this process attached is detached when it ends, on a normal exit, on
// SIGINT/SIGTERM/SIGHUP and on an uncaught error. Resources register on creation and leave on close().
// Pinned objects are not detached: closing our fd only drops our reference.

export interface Closable {
  close(): void;
}

const live = new Set<Closable>();
const shutdownHooks = new Set<() => void | Promise<void>>();
let installed = false;
let shuttingDown = false;

export function track<T extends Closable>(r: T): T {
  install();
  live.add(r);
  return r;
}

export function untrack(r: Closable): void {
  live.delete(r);
}

/** How many resources are open now (tests assert it returns to zero). */
export const liveCount = (): number => live.size;

/** Close everything still open, newest first (links before the objects they use). */
export function closeAll(): { closed: number; errors: Error[] } {
  const errors: Error[] = [];
  let closed = 0;
  for (const r of [...live].reverse()) {
    try {
      r.close();
      closed++;
    } catch (e) {
      errors.push(e as Error);
    }
    live.delete(r);
  }
  return { closed, errors };
}

/**
 * Runs `hook` when a signal asks the process to stop, before the guard closes what is left. A
 * foreground command uses it to print totals; the hook must not call process.exit().
 */
export function onShutdown(hook: () => void | Promise<void>): () => void {
  install();
  shutdownHooks.add(hook);
  return () => shutdownHooks.delete(hook);
}

const SIGNALS: Record<string, number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

async function stop(signal: string): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  let failed = false;
  for (const h of [...shutdownHooks]) {
    try {
      await h();
    } catch (e) {
      failed = true;
      process.stderr.write(`ebpfnet: during shutdown: ${(e as Error).message}\n`);
    }
  }
  const { errors } = closeAll();
  for (const e of errors) process.stderr.write(`ebpfnet: detach failed: ${e.message}\n`);
  // process.exit() drops writes still queued for a pipe: let what the hooks printed drain first.
  await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((r) => s.write('', () => r()))));
  // A command that installed a shutdown hook ends normally on Ctrl-C (it was asked to stop); an
  // unprepared process ends the way the signal would have ended it.
  const code = errors.length || failed ? 1 : shutdownHooks.size ? 0 : 128 + (SIGNALS[signal] ?? 0);
  process.exit(code);
}

export function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', () => {
    const { errors } = closeAll();
    for (const e of errors) process.stderr.write(`ebpfnet: detach failed: ${e.message}\n`);
  });
  for (const s of Object.keys(SIGNALS)) process.on(s, () => void stop(s));
  process.on('uncaughtException', (e) => {
    process.stderr.write(`ebpfnet: ${e.stack ?? e.message}\n`);
    closeAll();
    process.exit(1);
  });
  process.on('unhandledRejection', (e) => {
    process.stderr.write(`ebpfnet: ${(e as Error)?.stack ?? String(e)}\n`);
    closeAll();
    process.exit(1);
  });
}
