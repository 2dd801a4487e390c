// SPDX-License-Identifier: Apache-2.0
// A fresh two-host topology per test: network namespace `peer` joined by a veth pair to an end that
// stays in the root namespace (where the test's process attaches programs). Addresses live only in
// what the test made; cleanup() removes all of it, and is safe to call twice.
import { execFileSync } from 'node:child_process';

let seq = 0;

export interface VethPair {
  ns: string;
  /** the end in the root namespace */
  host: string;
  /** the end inside `ns` */
  peer: string;
  hostIp: string;
  peerIp: string;
  cleanup(): void;
}

const run = (args: string[]): void => {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
};

export function makeVethPair(): VethPair {
  const n = (process.pid % 200) + 1;
  const id = `${process.pid % 10000}x${++seq}`;
  const ns = `ebn-t${id}`;
  const host = `ebh${id}`;
  const peer = `ebp${id}`;
  const subnet = `10.199.${(n + seq * 7) % 250}`;
  const pair: VethPair = {
    ns,
    host,
    peer,
    hostIp: `${subnet}.1`,
    peerIp: `${subnet}.2`,
    cleanup() {
      for (const args of [['link', 'del', host], ['netns', 'del', ns]]) {
        try {
          run(args);
        } catch {
          /* already gone */
        }
      }
    },
  };
  try {
    run(['netns', 'add', ns]);
    run(['link', 'add', host, 'type', 'veth', 'peer', 'name', peer]);
    run(['link', 'set', peer, 'netns', ns]);
    run(['addr', 'add', `${pair.hostIp}/24`, 'dev', host]);
    run(['link', 'set', host, 'up']);
    run(['-n', ns, 'addr', 'add', `${pair.peerIp}/24`, 'dev', peer]);
    run(['-n', ns, 'link', 'set', peer, 'up']);
    run(['-n', ns, 'link', 'set', 'lo', 'up']);
  } catch (e) {
    pair.cleanup();
    throw e;
  }
  return pair;
}
