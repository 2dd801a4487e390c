// SPDX-License-Identifier: Apache-2.0
// Durable files in the agent's state directory. A whole-file write goes to a temporary file, is
// fsynced, then renamed over the old one and the directory fsynced: after a crash or a power cut a
// reader finds the old file or the new one, never half of one.
//
// The desired state is an object of named sections (the filter's, the balancer's), kept as a
// snapshot (state.json, written that way) plus a journal (state.journal) of the changes saved since:
// one JSON line each, `{"sections":{NAME:VALUE,...}}`, naming only the sections that changed (a
// balancer change does not write out a 100,000-rule filter again), written and fdatasynced. The
// journal is zero-filled a mebibyte ahead of its end and records are written over the zeros: an
// append changes the file's size, so its fdatasync writes the inode as well as the data, one more
// write the caller waits for. On this project's VMs, with the process idle between two syncs (as it
// is between the requests of one client), that took a sync from 250-280 us to 160-220 us on
// average. Replay stops at the first line that does not parse, the zeros included. Writes that
// arrive while one is on its way to the disk share the next one
// (group commit); every caller still hears back only once a version holding its change is on disk.
// Replay starts from the snapshot and lays each line's sections over it, in order. The journal's
// first line names the snapshot it continues (a hash of its bytes), so a journal left from before a
// newer snapshot is never replayed; a torn last line (a crash mid-append, never acknowledged) ends
// the replay.
//
// A record can carry notes (the agent's audit lines): the audit log itself is appended without a
// sync of its own, and fdatasynced before a snapshot drops the journal. After a power cut the
// journal still has the notes of every acknowledged change, and the agent appends the ones the
// audit log lost (AuditLog.recover). One fdatasync per change instead of two.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fdatasyncSync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { EbpfnetError, kernelError } from '../errors.js';
import { processAlive } from '../loader/system.js';
import { jsonChunks } from './json.js';

export const DEFAULT_STATE_DIR = '/var/lib/ebpfnet';

export function ensureDir(dir: string): void {
  try {
    // 0700: the directory holds the API token
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    // the code follows the cause: EACCES is a permission, ENOTDIR or EROFS is not
    const errno = (e as NodeJS.ErrnoException).errno;
    const k = errno === undefined ? null : kernelError(`create state directory ${dir}`, errno);
    throw new EbpfnetError(k?.code ?? 'EBPFNET_KERNEL', `create state directory ${dir}`, (e as Error).message, { hint: 'choose another with --state-dir', cause: e });
  }
}

/** `data` may come in pieces (a large JSON text written as it is made, never as one string). */
export function writeAtomic(file: string, data: string | Buffer | Iterable<string>, mode = 0o600): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    if (typeof data === 'string') writeSync(fd, data);
    else if (Buffer.isBuffer(data)) writeSync(fd, data);
    else for (const piece of data) writeSync(fd, piece);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  // the rename itself is durable only once the directory entry is on disk
  const dfd = openSync(dirname(file), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}


/**
 * Removes the temporary files of writers that died between writing and renaming (a `kill -9` in
 * that window leaves `NAME.tmp-PID`); a live process's file is left alone. Returns what went.
 */
export function removeStaleTemps(dir: string): string[] {
  const gone: string[] = [];
  for (const f of readdirSync(dir)) {
    const m = /\.tmp-(\d+)$/.exec(f);
    if (!m || Number(m[1]) === process.pid || processAlive(Number(m[1]))) continue;
    rmSync(join(dir, f), { force: true });
    gone.push(f);
  }
  return gone;
}

export const statePath = (dir: string): string => join(dir, 'state.json');
export const journalPath = (dir: string): string => join(dir, 'state.journal');
export const tokenPath = (dir: string): string => join(dir, 'token');
export const auditPath = (dir: string): string => join(dir, 'audit.log');

/**
 * When the journal would grow past this, or a record is larger than this and than the snapshot
 * (rewriting everything then costs no more than appending the record): a new snapshot.
 */
const JOURNAL_LIMIT = 4 << 20;
const RECORD_LIMIT = 64 << 10;
/** how far ahead of its end the journal is zero-filled, and the zeros it is filled from */
const ZERO_AHEAD = 1 << 20;
const ZEROS = Buffer.alloc(64 << 10);

const digest = (text: string): string => createHash('sha256').update(text).digest('hex');

/** The JSON text of `v` and a newline, in pieces, each also given to `seen` (the file's digest and size). */
function* jsonText(v: unknown, seen: (piece: string) => void): Generator<string> {
  for (const piece of jsonChunks(v)) {
    seen(piece);
    yield piece;
  }
  seen('\n');
  yield '\n';
}

interface Waiter {
  seq: number;
  resolve(): void;
  reject(e: Error): void;
}

/**
 * The agent's desired state on disk. `save()` takes the sections that changed and returns once they
 * (or a later version, which includes them) are durable; `syncWith` names other descriptors (the
 * audit log) that are fdatasynced before a snapshot replaces the journal.
 */
export class StateStore<T extends object> {
  private fd = -1;
  private journalBytes = 0;
  /** where the journal's records start (after its header line), and where its zeros end */
  private journalStart = 0;
  private zeroedTo = 0;
  /** bytes of the snapshot the journal continues */
  private snapshotBytes = 0;
  /** the newest version, durable or not (what a snapshot writes) */
  private current: T;
  /** the sections changed by versions not yet written: the next journal record */
  private unwritten: Partial<T> = {};
  /** notes of the versions not yet written: they ride in the next journal record */
  private notes: string[] = [];
  private durableSeq = 0;
  private seq = 0;
  private waiters: Waiter[] = [];
  private flushing: Promise<void> | null = null;

  private constructor(
    readonly dir: string,
    state: T,
    private readonly syncWith: () => number[],
  ) {
    this.current = state;
  }

  /** The newest durable state (snapshot plus journal), or null when there is none yet. */
  static load<T>(dir: string): T | null {
    return StateStore.replay<T>(dir).state;
  }

  /** The newest durable state, and the notes of the journal's records, oldest first. */
  static replay<T>(dir: string): { state: T | null; notes: string[] } {
    const snap = existsSync(statePath(dir)) ? readFileSync(statePath(dir), 'utf8') : null;
    let state = snap === null ? null : parseState<T>(statePath(dir), snap);
    const notes: string[] = [];
    const jp = journalPath(dir);
    if (!existsSync(jp)) return { state, notes };
    const lines = readFileSync(jp, 'utf8').split('\n');
    let header: { after?: string } = {};
    try {
      header = JSON.parse(lines[0]) as { after?: string };
    } catch {
      return { state, notes }; // a journal whose header never reached the disk holds nothing acknowledged
    }
    if (header.after !== digest(snap ?? '')) return { state, notes };
    for (let i = 1; i < lines.length; i++) {
      if (!lines[i]) continue;
      // the zeros ahead of the journal's end: nothing was written from here on
      if (lines[i].charCodeAt(0) === 0) break;
      let rec: { sections?: Partial<T>; state?: T; notes?: string[] };
      try {
        rec = JSON.parse(lines[i]) as typeof rec;
      } catch {
        break; // torn by a crash mid-append: it and anything after were never acknowledged
      }
      // {state} is a whole version, as agents before per-section records wrote them
      state = rec.sections ? ({ ...state, ...rec.sections } as T) : (rec.state ?? state);
      notes.push(...(rec.notes ?? []));
    }
    return { state, notes };
  }

  /** Opens the store on `state` (what load() returned, reconciled): written as the new snapshot. */
  static open<T extends object>(dir: string, state: T, syncWith: () => number[] = () => []): StateStore<T> {
    const s = new StateStore<T>(dir, state, syncWith);
    s.snapshot();
    return s;
  }

  /**
   * Replaces the given sections (the rest stay as they are; a section is replaced, never removed:
   * undefined has no JSON); resolves once this version (or a later one) is on disk, with its
   * notes. Call in the order the changes happen.
   */
  save(sections: Partial<T>, notes: string[] = []): Promise<void> {
    const seq = ++this.seq;
    this.notes.push(...notes);
    this.current = { ...this.current, ...sections };
    this.unwritten = { ...this.unwritten, ...sections };
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
    this.kick();
    return done;
  }

  /** Closes the journal; a save still on its way is answered with an error. */
  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  private kick(): void {
    if (this.flushing) return;
    this.flushing = this.flush().finally(() => {
      this.flushing = null;
      // versions saved while a flush failed get a flush of their own
      if (this.waiters.length) this.kick();
    });
  }

  private async flush(): Promise<void> {
    // let every write that is already queued in this turn of the event loop join this flush
    await new Promise<void>((r) => setImmediate(r));
    while (this.seq > this.durableSeq) {
      const seq = this.seq;
      const sections = this.unwritten;
      const notes = this.notes;
      this.unwritten = {};
      this.notes = [];
      try {
        if (this.fd < 0) throw new EbpfnetError('EBPFNET_CLOSED', 'save the agent state', 'the state store is closed (the agent is shutting down)');
        const line = `${JSON.stringify(notes.length ? { sections, notes } : { sections })}\n`;
        const bytes = Buffer.byteLength(line);
        if (this.journalBytes + bytes > JOURNAL_LIMIT || bytes > Math.max(RECORD_LIMIT, this.snapshotBytes)) this.snapshot();
        else {
          // a failed or short append leaves a line the replay would stop at: until a new
          // snapshot replaces the journal, nothing more may be appended to it
          const at = this.journalBytes;
          this.journalBytes = Infinity;
          const pos = this.journalStart + at;
          if (pos + bytes > this.zeroedTo) this.zeroAhead(pos + bytes);
          if (writeSync(this.fd, line, pos) !== bytes) throw new Error(`short write to ${journalPath(this.dir)}`);
          // here, not on the thread pool: the hand-over there and back cost a one-client write
          // more than the sync itself, and requests arriving meanwhile join the next flush anyway
          fdatasyncSync(this.fd);
          this.journalBytes = at + bytes;
        }
      } catch (e) {
        // the sections this record held are in no record now: the next write must be a snapshot
        this.journalBytes = Infinity;
        const err =
          e instanceof EbpfnetError
            ? e
            : new EbpfnetError('EBPFNET_KERNEL', `save the agent state in ${this.dir}`, (e as Error).message, { hint: 'the change is in the kernel but not on disk: check the state directory\'s file system', cause: e });
        for (const w of this.settle(seq)) w.reject(err);
        return;
      }
      this.durableSeq = seq;
      for (const w of this.settle(seq)) w.resolve();
    }
  }

  /** Takes the waiters that version `seq` answers. */
  private settle(seq: number): Waiter[] {
    const done = this.waiters.filter((w) => w.seq <= seq);
    this.waiters = this.waiters.filter((w) => w.seq > seq);
    return done;
  }

  /** state.json atomically, then a fresh journal that continues it (also atomically). */
  private snapshot(): void {
    // until this completes, the journal may not continue the snapshot on disk: no appends
    this.journalBytes = Infinity;
    // notes (audit lines) in the journal about to go must be on disk in their own file first
    for (const fd of this.syncWith()) fdatasyncSync(fd);
    // written as it is made: a 100,000-rule state is ~7 MB of JSON, never needed as one string
    const h = createHash('sha256');
    let bytes = 0;
    writeAtomic(
      statePath(this.dir),
      jsonText(this.current, (piece) => {
        h.update(piece);
        bytes += Buffer.byteLength(piece);
      }),
    );
    const header = `${JSON.stringify({ after: h.digest('hex') })}\n`;
    writeAtomic(journalPath(this.dir), header);
    try {
      if (this.fd >= 0) closeSync(this.fd);
    } catch {
      /* the descriptor that failed us: the new journal replaces it anyway */
    }
    this.fd = openSync(journalPath(this.dir), 'r+');
    this.journalStart = Buffer.byteLength(header);
    this.zeroedTo = this.journalStart;
    this.journalBytes = 0;
    this.snapshotBytes = bytes;
  }

  /** Zero-fills the journal from where its zeros end to ZERO_AHEAD past `end` (the record's sync covers it). */
  private zeroAhead(end: number): void {
    const to = end + ZERO_AHEAD;
    for (let at = this.zeroedTo; at < to; ) {
      const n = writeSync(this.fd, ZEROS, 0, Math.min(ZEROS.length, to - at), at);
      at += n;
    }
    this.zeroedTo = to;
  }
}

function parseState<T>(file: string, text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new EbpfnetError('EBPFNET_USAGE', `read ${file}`, `not valid JSON: ${(e as Error).message}`, { hint: 'fix or remove the file; the agent rewrites it on the next change' });
  }
}

/** The audit log: one appendable descriptor for the agent's lifetime, one line per change. */
export class AuditLog {
  private fd = -1;
  constructor(readonly file: string) {}

  append(line: string): void {
    if (this.fd < 0) this.fd = openSync(this.file, 'a', 0o600);
    writeSync(this.fd, `${line}\n`);
  }

  /**
   * Appends the lines of `notes` (the journal's audit lines) the log does not end with: those a
   * power cut took before the log reached the disk. Then syncs the log.
   */
  recover(notes: string[]): string[] {
    if (!notes.length) return [];
    // the journal holds at most JOURNAL_LIMIT bytes of notes: the log's tail that long has them all
    let tail = '';
    if (existsSync(this.file)) {
      const fd = openSync(this.file, 'r');
      try {
        const size = fstatSync(fd).size;
        const buf = Buffer.alloc(Math.min(size, JOURNAL_LIMIT + RECORD_LIMIT));
        readSync(fd, buf, 0, buf.length, size - buf.length);
        tail = buf.toString('utf8');
      } finally {
        closeSync(fd);
      }
    }
    const lost = notes.filter((n) => !tail.includes(`${n}\n`));
    for (const n of lost) this.append(n);
    for (const fd of this.fds) fdatasyncSync(fd);
    return lost;
  }

  /** The descriptor to fdatasync before the journal is replaced (none before the first line). */
  get fds(): number[] {
    return this.fd >= 0 ? [this.fd] : [];
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
