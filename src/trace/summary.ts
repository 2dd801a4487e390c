// SPDX-License-Identifier: Apache-2.0
// What `ebpfnet trace` says when it ends: events seen, events lost, the busiest commands. Pure.
import { printable } from './event.js';

export interface LostCounts {
  /** ring buffer reservations that failed: the reader fell behind */
  lost: bigint;
  /** calls not traced because another thread inside a traced syscall held their slot in the kernel */
  untracked: bigint;
}

export interface CommandCount {
  comm: string;
  events: number;
  failed: number;
}

export class TraceSummary {
  /** events that passed every filter (and were shown) */
  seen = 0;
  failed = 0;
  /** events the kernel sent that -n then hid */
  skipped = 0;
  readonly bySyscall = new Map<string, number>();
  private readonly byComm = new Map<string, CommandCount>();

  /** One event that passed the filters: its command name, syscall and return value. */
  add(comm: string, syscall: string, ret: number): void {
    this.seen++;
    const bad = ret < 0;
    if (bad) this.failed++;
    this.bySyscall.set(syscall, (this.bySyscall.get(syscall) ?? 0) + 1);
    let c = this.byComm.get(comm);
    if (!c) this.byComm.set(comm, (c = { comm, events: 0, failed: 0 }));
    c.events++;
    if (bad) c.failed++;
  }

  skip(): void {
    this.skipped++;
  }

  /** The busiest commands, most events first (ties by name, so the order is stable). */
  top(n = 5): CommandCount[] {
    return [...this.byComm.values()].sort((a, b) => b.events - a.events || a.comm.localeCompare(b.comm)).slice(0, n);
  }

  /**
   * Two lines a person reads and a script can match:
   *   summary: 12 events seen, 0 lost in 4.2 s (mkdir 10, mkdirat 2; 3 failed)
   *   top commands: mkdir 10 (1 failed), python3 2 (2 failed)
   */
  format(lost: LostCounts, elapsedMs: number, what: string[]): string {
    const total = lost.lost + lost.untracked;
    const parts = what.map((s) => `${s} ${this.bySyscall.get(s) ?? 0}`).join(', ');
    const notes: string[] = [];
    if (this.skipped) notes.push(`${this.skipped} more from other commands hidden by --name`);
    if (lost.untracked) notes.push(`${lost.untracked} of the lost were not tracked: their thread shared a slot with another thread inside a traced call`);
    if (lost.lost) notes.push('the reader fell behind: raise --buffer-size or narrow the filters');
    const out = [`summary: ${this.seen} events seen, ${total} lost in ${(elapsedMs / 1000).toFixed(1)} s (${parts}; ${this.failed} failed)`];
    if (notes.length) out.push(`note: ${notes.join('; ')}`);
    const top = this.top();
    out.push(`top commands: ${top.length ? top.map((c) => `${printable(c.comm)} ${c.events}${c.failed ? ` (${c.failed} failed)` : ''}`).join(', ') : 'none'}`);
    return out.join('\n');
  }
}
