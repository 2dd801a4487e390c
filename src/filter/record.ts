// SPDX-License-Identifier: Apache-2.0
// The filter's record in /run: which rule text counts in which counter slot, and the hook it runs
// in, so whoever adopts a pinned filter (the next agent, `status`, `unload`) names its counters.
//
// Two files per filter, written in turn (`<key>.0.json`, `<key>.1.json`; the key is
// `<netns inode>/<ifindex>`, see pins.ts). A write overwrites the
// older one in place: a fixed-width header line naming its sequence number, length and hash, then
// the body from byte HEADER on. A reader takes the complete file with the higher number; a write cut
// short by a crash fails its hash, and the other file is still whole. Compared with temp file +
// rename, a policy change costs no file creation, unlink or rename (a quarter of the time a
// one-rule change took through the agent).
import { closeSync, constants, existsSync, fstatSync, ftruncateSync, openSync, readFileSync, rmSync, writeSync, writevSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pruneEmptyDirs, withDir } from '../loader/dirs.js';
import { RUN_ROOT } from '../loader/system.js';

export const STATE_ROOT = `${RUN_ROOT}/filter`;

/** Whose filter a record is (the rest of its body is the datapath's: rules, slots, hook). */
export interface RecordIdentity {
  /** the interface's name when the record was written (for status in other namespaces) */
  ifname?: string;
  /** SO_NETNS_COOKIE of the namespace, as text: never reused, unlike its inode */
  netnsCookie?: string;
}

/** Room for the header line; the body starts here. */
const HEADER = 128;
const SLOTS = [0, 1] as const;
/** A large body goes to the file in writes of about this many characters. */
const WRITE_SIZE = 64 << 10;

const slotPath = (key: string, slot: number, root: string): string => join(root, `${key}.${slot}.json`);

const FNV_SEED = 0x811c9dc5;

/** 32-bit FNV-1a over `b`, continuing from `h` (a body written in pieces hashes as one). */
function fnv1a(b: Uint8Array, h = FNV_SEED): number {
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return h >>> 0;
}

interface Header {
  seq: number;
  bytes: number;
  /** FNV-1a of the body: enough to tell a torn write (nobody forges these files) */
  fnv: number;
}

/** The newest complete body of a record, or null when there is none. */
export function readRecord(key: string, root = STATE_ROOT): string | null {
  let best: { seq: number; body: string } | null = null;
  for (const slot of SLOTS) {
    const r = readSlot(slotPath(key, slot, root));
    if (r && (!best || r.seq > best.seq)) best = r;
  }
  return best?.body ?? null;
}

function readSlot(file: string): { seq: number; body: string } | null {
  if (!existsSync(file)) return null;
  const buf = readFileSync(file);
  let h: Header;
  try {
    h = JSON.parse(buf.toString('utf8', 0, Math.min(HEADER, buf.length))) as Header;
  } catch {
    return null; // never completed
  }
  if (!Number.isSafeInteger(h.seq) || !Number.isSafeInteger(h.bytes) || buf.length < HEADER + h.bytes) return null;
  const body = buf.subarray(HEADER, HEADER + h.bytes);
  if (fnv1a(body) !== h.fnv) return null; // torn by a crash mid-write
  return { seq: h.seq, body: body.toString('utf8') };
}

/** Removes a record. */
export function removeRecord(key: string, root = STATE_ROOT): void {
  for (const slot of SLOTS) rmSync(slotPath(key, slot, root), { force: true });
  pruneEmptyDirs(dirname(slotPath(key, 0, root)));
}

/** Writes a record; keeps both files open for the writer's lifetime. */
export class RecordWriter {
  private fds: number[] = [];
  private sizes = [0, 0];
  private seq = 0;

  constructor(
    readonly key: string,
    private readonly root = STATE_ROOT,
  ) {}

  /**
   * Replaces the record with the body the chunks make, in order. A small body and its header go in
   * one system call; a large one in 64 KiB writes, its header last.
   */
  write(chunks: Iterable<string>): void {
    if (!this.fds.length) this.open();
    // the slot not holding the newest record
    const slot = (this.seq + 1) % 2;
    const fd = this.fds[slot];
    let hash = FNV_SEED;
    let at = HEADER;
    let pending = '';
    const flush = (): void => {
      const b = Buffer.from(pending);
      hash = fnv1a(b, hash);
      writeSync(fd, b, 0, b.length, at);
      at += b.length;
      pending = '';
    };
    for (const c of chunks) {
      pending += c;
      if (pending.length >= WRITE_SIZE) flush();
    }
    const seq = this.seq + 1;
    const header = (bytes: number): Buffer => Buffer.from(`${JSON.stringify({ seq, bytes, fnv: hash } satisfies Header).padEnd(HEADER - 1)}\n`);
    if (at === HEADER) {
      const b = Buffer.from(pending);
      hash = fnv1a(b, hash);
      writevSync(fd, [header(b.length), b], 0);
      at += b.length;
    } else {
      if (pending) flush();
      writeSync(fd, header(at - HEADER), 0, HEADER, 0);
    }
    if (at < this.sizes[slot]) ftruncateSync(fd, at);
    this.sizes[slot] = at;
    this.seq = seq;
  }

  close(): void {
    for (const fd of this.fds) closeSync(fd);
    this.fds = [];
  }

  private open(): void {
    // continue after the record another writer (an earlier agent) left: record N sits in slot N % 2
    for (const slot of SLOTS) this.seq = Math.max(this.seq, readSlot(slotPath(this.key, slot, this.root))?.seq ?? 0);
    // not O_APPEND: Linux appends every write of such a descriptor, whatever position it names
    const open = (slot: number): number => openSync(slotPath(this.key, slot, this.root), constants.O_RDWR | constants.O_CREAT, 0o644);
    // the first slot is the folder's first entry (a concurrent prune may take the folder until then)
    const first = withDir(dirname(slotPath(this.key, 0, this.root)), () => open(0));
    this.fds = [first, open(1)];
    this.sizes = this.fds.map((fd) => fstatSync(fd).size);
  }
}
