// SPDX-License-Identifier: Apache-2.0
// Kubernetes' names published beside a balancer's pins (src/lb/names.ts), read by `lb list`.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { lockPath } from '../../src/lb/lock.js';
import { namesPath, readNamesFile, writeNamesFile } from '../../src/lb/names.js';

const dir = mkdtempSync(join(tmpdir(), 'ebpfnet-names-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('a written file reads back whole, and a rewrite replaces it without leaving a temporary file', () => {
  const p = join(dir, 'a.names.json');
  writeNamesFile(p, { '10.96.0.10:80/tcp': 'default/web:http', '10.96.0.11:53/udp': 'kube-system/dns:53' });
  expect(readNamesFile(p)).toEqual({ '10.96.0.10:80/tcp': 'default/web:http', '10.96.0.11:53/udp': 'kube-system/dns:53' });
  writeNamesFile(p, { '10.96.0.10:80/tcp': 'default/web:https' });
  expect(readNamesFile(p)).toEqual({ '10.96.0.10:80/tcp': 'default/web:https' });
  expect(readdirSync(dir)).toEqual(['a.names.json']);
});

it('a missing, torn or foreign file names nothing (lb list then shows addresses only) and non-string names are left out', () => {
  expect(readNamesFile(join(dir, 'missing.json'))).toEqual({});
  const p = join(dir, 'bad.json');
  writeFileSync(p, '{"pid":1,"names":{"10.96.0.10:80/tcp":"default/w');
  expect(readNamesFile(p)).toEqual({});
  writeFileSync(p, '[1,2]');
  expect(readNamesFile(p)).toEqual({});
  writeFileSync(p, '{"names":{"a":"x/y:z","b":3}}');
  expect(readNamesFile(p)).toEqual({ a: 'x/y:z' });
});

it('one file per balancer, beside its lock: a pin dir reached through /proc/1/root is the same balancer', () => {
  expect(namesPath('/sys/fs/bpf/ebpfnet/lb')).toBe(lockPath('/sys/fs/bpf/ebpfnet/lb').replace(/\.lock$/, '.names.json'));
  expect(namesPath('/proc/1/root/sys/fs/bpf/ebpfnet/lb')).toBe(namesPath('/sys/fs/bpf/ebpfnet/lb'));
  expect(namesPath('/sys/fs/bpf/other/lb')).not.toBe(namesPath('/sys/fs/bpf/ebpfnet/lb'));
});
