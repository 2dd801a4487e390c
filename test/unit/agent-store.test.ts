// SPDX-License-Identifier: Apache-2.0
// The agent's durable state: snapshot plus journal, group commit, and what a crash can leave.
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, StateStore, auditPath, journalPath, statePath } from '../../src/agent/store.js';
import { journalRecords } from '../helpers/agent.js';

interface S {
  n: number;
  text?: string;
}

describe('agent state store', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-store-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('nothing saved: load is null; open writes the snapshot, mode 0600, and an empty journal', () => {
    expect(StateStore.load<S>(dir)).toBeNull();
    const s = StateStore.open<S>(dir, { n: 0 });
    expect(JSON.parse(readFileSync(statePath(dir), 'utf8'))).toEqual({ n: 0 });
    expect(statSync(statePath(dir)).mode & 0o777).toBe(0o600);
    expect(statSync(journalPath(dir)).mode & 0o777).toBe(0o600);
    expect(StateStore.load<S>(dir)).toEqual({ n: 0 });
    s.close();
  });

  it('every save is readable back once it resolves, as after a kill -9 (no close)', async () => {
    const s = StateStore.open<S>(dir, { n: 0 });
    for (let i = 1; i <= 5; i++) {
      await s.save({ n: i });
      expect(StateStore.load<S>(dir)).toEqual({ n: i });
    }
    // the snapshot is untouched: the versions are in the journal
    expect(JSON.parse(readFileSync(statePath(dir), 'utf8'))).toEqual({ n: 0 });
    s.close();
  });

  it('group commit: saves made together resolve together, after one write of the newest version', async () => {
    const s = StateStore.open<S>(dir, { n: 0 });
    const order: number[] = [];
    await Promise.all(Array.from({ length: 20 }, (_, i) => s.save({ n: i + 1 }).then(() => order.push(i + 1))));
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const records = journalRecords(dir);
    expect(records.length).toBeLessThan(20);
    expect(JSON.parse(records.at(-1)!)).toEqual({ sections: { n: 20 } });
    expect(StateStore.load<S>(dir)).toEqual({ n: 20 });
    s.close();
  });

  it('records are written over zeros filled ahead of the journal\'s end (no size change to sync); replay stops at them', async () => {
    const s = StateStore.open<S>(dir, { n: 0 });
    await s.save({ n: 1 });
    const size = statSync(journalPath(dir)).size;
    expect(size).toBeGreaterThan(1 << 20);
    await s.save({ n: 2 });
    // the second record went over the zeros: the file did not grow
    expect(statSync(journalPath(dir)).size).toBe(size);
    const body = readFileSync(journalPath(dir));
    const end = body.indexOf(0);
    expect(body.subarray(end).every((b) => b === 0)).toBe(true);
    expect(journalRecords(dir)).toEqual([JSON.stringify({ sections: { n: 1 } }), JSON.stringify({ sections: { n: 2 } })]);
    expect(StateStore.load<S>(dir)).toEqual({ n: 2 });
    s.close();
  });

  it('a record holds only the sections that changed; replay lays them over the snapshot in order', async () => {
    const big = 'x'.repeat(200_000);
    const s = StateStore.open<S>(dir, { n: 0, text: big });
    await s.save({ n: 1 });
    // saves sharing a flush share a record: the newest value of every section they changed
    await Promise.all([s.save({ text: 'a' }), s.save({ n: 2 }), s.save({ n: 3 })]);
    await s.save({ text: 'b' });
    const records = journalRecords(dir);
    expect(records.map((r) => JSON.parse(r))).toEqual([{ sections: { n: 1 } }, { sections: { text: 'a', n: 3 } }, { sections: { text: 'b' } }]);
    // the large section stayed in the snapshot, written once
    expect(JSON.parse(readFileSync(statePath(dir), 'utf8'))).toEqual({ n: 0, text: big });
    expect(StateStore.load<S>(dir)).toEqual({ n: 3, text: 'b' });
    s.close();
  });

  it('a record larger than 64 kB but smaller than the snapshot is appended, not a new snapshot', async () => {
    const s = StateStore.open<S>(dir, { n: 0, text: 'x'.repeat(500_000) });
    const medium = 'y'.repeat(100_000);
    await s.save({ text: medium });
    expect(JSON.parse(readFileSync(statePath(dir), 'utf8')).text).toHaveLength(500_000);
    expect(journalRecords(dir)[0]).toBe(JSON.stringify({ sections: { text: medium } }));
    expect(StateStore.load<S>(dir)).toEqual({ n: 0, text: medium });
    s.close();
  });

  it('a journal of whole versions ({state} records, from an agent before sections) still replays', () => {
    StateStore.open<S>(dir, { n: 0 }).close();
    const fd = openSync(journalPath(dir), 'a');
    writeSync(fd, `${JSON.stringify({ state: { n: 5, text: 'old' } })}\n${JSON.stringify({ sections: { n: 6 } })}\n`);
    closeSync(fd);
    expect(StateStore.load<S>(dir)).toEqual({ n: 6, text: 'old' });
  });

  it('a torn record ends the replay; a journal older than the snapshot is never replayed', async () => {
    const s = StateStore.open<S>(dir, { n: 0 });
    await s.save({ n: 1 });
    s.close();
    // a crash in the middle of appending record 2: half a line
    const fd = openSync(journalPath(dir), 'a');
    writeSync(fd, '{"sections":{"n":2');
    closeSync(fd);
    expect(StateStore.load<S>(dir)).toEqual({ n: 1 });
    // a new snapshot written, then a crash before the fresh journal replaced the old one
    const old = readFileSync(journalPath(dir));
    StateStore.open<S>(dir, { n: 7 }).close();
    writeFileSync(journalPath(dir), old);
    expect(StateStore.load<S>(dir)).toEqual({ n: 7 });
  });

  it('a full journal or a large version is folded into a new snapshot', async () => {
    const s = StateStore.open<S>(dir, { n: 0 });
    const big = 'x'.repeat(100_000);
    await s.save({ n: 1, text: big });
    expect(JSON.parse(readFileSync(statePath(dir), 'utf8'))).toEqual({ n: 1, text: big });
    const medium = 'y'.repeat(60_000);
    for (let i = 2; i < 80; i++) await s.save({ n: i, text: medium }); // 78 x 60 kB > the 4 MiB journal
    expect(JSON.parse(readFileSync(statePath(dir), 'utf8')).n).toBeGreaterThan(1);
    expect(StateStore.load<S>(dir)).toEqual({ n: 79, text: medium });
    s.close();
  });

  it('after a failed append nothing more goes to that journal: the next save is a new snapshot, with the failed sections', async () => {
    const s = StateStore.open<S>(dir, { n: 0 });
    await s.save({ n: 1 });
    closeSync((s as unknown as { fd: number }).fd); // the journal's descriptor fails under the store
    await expect(s.save({ text: 'kept' })).rejects.toThrow(/^save the agent state in .*: EBADF/);
    await s.save({ n: 3 });
    expect(JSON.parse(readFileSync(statePath(dir), 'utf8'))).toEqual({ n: 3, text: 'kept' });
    expect(StateStore.load<S>(dir)).toEqual({ n: 3, text: 'kept' });
    await s.save({ n: 4 }); // and appends resume on the new journal
    expect(JSON.parse(readFileSync(statePath(dir), 'utf8'))).toEqual({ n: 3, text: 'kept' });
    expect(StateStore.load<S>(dir)).toEqual({ n: 4, text: 'kept' });
    s.close();
  });

  it('a save after close fails instead of claiming durability', async () => {
    const s = StateStore.open<S>(dir, { n: 0 });
    s.close();
    await expect(s.save({ n: 1 })).rejects.toThrow(/the state store is closed/);
    expect(StateStore.load<S>(dir)).toEqual({ n: 0 });
  });

  it('the audit log appends through one descriptor, mode 0600', () => {
    const a = new AuditLog(auditPath(dir));
    expect(a.fds).toEqual([]);
    expect(existsSync(auditPath(dir))).toBe(false);
    a.append('{"op":"one"}');
    a.append('{"op":"two"}');
    expect(a.fds).toHaveLength(1);
    a.close();
    const again = new AuditLog(auditPath(dir));
    again.append('{"op":"three"}');
    again.close();
    expect(readFileSync(auditPath(dir), 'utf8')).toBe('{"op":"one"}\n{"op":"two"}\n{"op":"three"}\n');
    expect(statSync(auditPath(dir)).mode & 0o777).toBe(0o600);
  });

  it('notes ride with their version: replayed in order, the torn record\'s never', async () => {
    const s = StateStore.open<S>(dir, { n: 0 });
    await s.save({ n: 1 }, ['a']);
    // saved together: one record, both notes
    await Promise.all([s.save({ n: 2 }, ['b']), s.save({ n: 3 }, ['c'])]);
    s.close();
    const fd = openSync(journalPath(dir), 'a');
    writeSync(fd, '{"state":{"n":4},"notes":["d"');
    closeSync(fd);
    expect(StateStore.replay<S>(dir)).toEqual({ state: { n: 3 }, notes: ['a', 'b', 'c'] });
    // a new snapshot starts an empty journal: nothing to recover any more
    StateStore.open<S>(dir, { n: 3 }).close();
    expect(StateStore.replay<S>(dir)).toEqual({ state: { n: 3 }, notes: [] });
  });

  it('recover appends the journalled audit lines the log lost, once, and nothing else', () => {
    const a = new AuditLog(auditPath(dir));
    a.append('{"op":"one"}');
    a.close();
    // "two" and "three" reached the journal but not the log (a power cut)
    const b = new AuditLog(auditPath(dir));
    expect(b.recover(['{"op":"one"}', '{"op":"two"}', '{"op":"three"}'])).toEqual(['{"op":"two"}', '{"op":"three"}']);
    expect(b.recover(['{"op":"one"}', '{"op":"two"}', '{"op":"three"}'])).toEqual([]);
    b.close();
    expect(readFileSync(auditPath(dir), 'utf8')).toBe('{"op":"one"}\n{"op":"two"}\n{"op":"three"}\n');
  });

  it('a snapshot syncs the audit log before it drops the journal holding its lines', async () => {
    const a = new AuditLog(auditPath(dir));
    /** the notes the journal held each time the store synced the audit log */
    const atSync: string[][] = [];
    const s = StateStore.open<S>(dir, { n: 0 }, () => (atSync.push(StateStore.replay<S>(dir).notes), a.fds));
    a.append('{"op":"one"}');
    await s.save({ n: 1 }, ['{"op":"one"}']);
    expect(StateStore.replay<S>(dir).notes).toEqual(['{"op":"one"}']);
    // too large for the journal: a snapshot, which drops the journal holding "one"
    a.append('{"op":"two"}');
    await s.save({ n: 2, text: 'x'.repeat(70_000) }, ['{"op":"two"}']);
    expect(StateStore.replay<S>(dir)).toEqual({ state: { n: 2, text: 'x'.repeat(70_000) }, notes: [] });
    // the log was synced while the journal still held "one": no moment without a durable copy
    expect(atSync.at(-1)).toEqual(['{"op":"one"}']);
    s.close();
    a.close();
  });
});
