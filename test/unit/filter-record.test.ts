// SPDX-License-Identifier: Apache-2.0
// The filter's record in /run (src/filter/record.ts): two files written in turn, the newest whole
// one wins, and a write cut short by a crash leaves the previous record readable.
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RecordWriter, readRecord, removeRecord } from '../../src/filter/record.js';

describe('filter record', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'ebpfnet-record-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('none written: null; each write is read back, in chunks or whole, longer or shorter', () => {
    expect(readRecord('eth9', root)).toBeNull();
    const w = new RecordWriter('eth9', root);
    const bodies = ['{"a":1}', 'x'.repeat(5000), '{"b":2}', '{"c":"ü"}', ''];
    for (const b of bodies) {
      w.write([b.slice(0, 3), b.slice(3)]);
      expect(readRecord('eth9', root)).toBe(b);
    }
    w.close();
    // a slot that held the 5,000-byte body was cut to its new length
    expect(Math.max(...readdirSync(root).map((f) => statSync(join(root, f)).size))).toBeLessThan(1000);
  });

  it('a write torn by a crash leaves the previous record', () => {
    const w = new RecordWriter('eth9', root);
    w.write(['{"old":true}']);
    w.write(['{"new":true,"pad":"' + 'y'.repeat(300) + '"}']);
    w.close();
    // the newest slot: its body cut in half, its header naming the whole
    const newest = readdirSync(root)
      .map((f) => join(root, f))
      .find((f) => readFileSync(f, 'utf8').includes('"new"'))!;
    const text = readFileSync(newest);
    writeFileSync(newest, text.subarray(0, text.length - 100));
    expect(readRecord('eth9', root)).toBe('{"old":true}');
    // same length, other bytes: the hash tells
    writeFileSync(newest, Buffer.concat([text.subarray(0, text.length - 10), Buffer.from('0123456789')]));
    expect(readRecord('eth9', root)).toBe('{"old":true}');
  });

  it('a new writer (the next agent) continues the sequence and never overwrites the newest record', () => {
    const a = new RecordWriter('eth9', root);
    a.write(['1']);
    a.write(['2']);
    a.write(['3']);
    a.close();
    const b = new RecordWriter('eth9', root);
    b.write(['4']);
    expect(readRecord('eth9', root)).toBe('4');
    // the other file still holds 3, the record before
    expect(readdirSync(root).map((f) => readFileSync(join(root, f), 'utf8').slice(128)).sort()).toEqual(['3', '4']);
    b.write(['5']);
    expect(readRecord('eth9', root)).toBe('5');
    b.close();
    removeRecord('eth9', root);
    expect(readdirSync(root)).toEqual([]);
    expect(readRecord('eth9', root)).toBeNull();
  });
});
