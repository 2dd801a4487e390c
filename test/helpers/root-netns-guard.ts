// SPDX-License-Identifier: Apache-2.0
// A setup file (vitest.config.ts) for every test file run as root: it watches the network
// namespace the file starts in, the machine's own, while the file runs (`ip -o monitor link
// address`, plus a snapshot before and after) and fails the file when an interface or address of
// its own appeared there, even briefly, or when the file ends inside a namespace it entered. Tests
// make those in namespaces of their own (test/helpers/netns.ts); root-netns.ts says what counts.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, openSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { currentNetnsInode } from './netns.js';
import { ipSnapshot, nameTags, oursInRoot } from './root-netns.js';

const asRoot = process.getuid?.() === 0;
let monitor: ChildProcess | null = null;
let seen = '';
let before = new Set<string>();
/** a descriptor on the namespace the file started in, and the path nsenter opens it by */
let root: { fd: number; path: string } | null = null;

beforeAll(async () => {
  if (!asRoot) return; // without root a test cannot make interfaces anywhere
  const fd = openSync('/proc/thread-self/ns/net', 'r');
  root = { fd, path: `/proc/${process.pid}/fd/${fd}` };
  before = new Set(ipSnapshot(root.path));
  seen = '';
  monitor = spawn('nsenter', [`--net=${root.path}`, 'ip', '-o', 'monitor', 'link', 'address'], { stdio: ['ignore', 'pipe', 'ignore'] });
  monitor.stdout!.on('data', (d: Buffer) => (seen += d));
  // ip subscribes to its netlink groups right after it starts; the snapshots cover what it misses
  await new Promise((r) => setTimeout(r, 100));
});

afterAll(async () => {
  if (!root || !monitor) return;
  const after = ipSnapshot(root.path);
  await new Promise((r) => setTimeout(r, 50)); // the last events reach the monitor
  monitor.kill('SIGTERM');
  monitor = null;
  const stillInside = currentNetnsInode() !== fstatSync(root.fd).ino;
  closeSync(root.fd);
  root = null;
  const lines = [...seen.split('\n'), ...after.filter((l) => !before.has(l))];
  const ours = oursInRoot(lines, nameTags(process.pid));
  if (ours.length) {
    const what = [...new Set(ours.map((c) => (c.addr ? `address ${c.addr} on ${c.ifname}` : `interface ${c.ifname}`)))];
    throw new Error(`this test file put ${what.join(', ')} into the root network namespace; make them in a namespace of the test's own (test/helpers/netns.ts)`);
  }
  if (stillInside) throw new Error("this test file ended inside a network namespace it entered: call the cleanup() of what makeVethPair/makeNetns made (in afterEach/afterAll)");
});
