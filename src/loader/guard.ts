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

/** How the guard reports what goes wrong while the process ends: `fatal` for an uncaught error. */
export type GuardReport = (level: 'error' | 'fatal', msg: string, err: Error) => void;

/**
 * The guard replaced Node's own printing of uncaught errors, so unless told otherwise it prints
 * them as Node would, to stderr; a daemon routes them to its logger (setGuardReport).
 */
const toStderr: GuardReport = (_level, msg) => void process.stderr.write(`ebpfnet: ${msg}\n`);
let report: GuardReport = toStderr;

/** Routes the guard's messages (null: back to stderr). */
export function setGuardReport(r: GuardReport | null): void {
  report = r ?? toStderr;
}

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
      report('error', `during shutdown: ${(e as Error).message}`, e as Error);
    }
  }
  const { errors } = closeAll();
  for (const e of errors) report('error', `detach failed: ${e.message}`, e);
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
    for (const e of errors) report('error', `detach failed: ${e.message}`, e);
  });
  for (const s of Object.keys(SIGNALS)) process.on(s, () => void stop(s));
  process.on('uncaughtException', (e) => {
    report('fatal', e.stack ?? e.message, e);
    closeAll();
    process.exit(1);
  });
  process.on('unhandledRejection', (e) => {
    report('fatal', (e as Error)?.stack ?? String(e), e instanceof Error ? e : new Error(String(e)));
    closeAll();
    process.exit(1);
  });
}
