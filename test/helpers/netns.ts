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

export interface TwoHosts {
  /** namespace names */
  source: string;
  target: string;
  /** the target's end of the link (where a filter goes) */
  targetIf: string;
  sourceIp: string;
  targetIp: string;
  sourceIp6: string;
  targetIp6: string;
  cleanup(): void;
}

/** The lab topology in miniature: two namespaces joined by a veth pair, IPv4 and IPv6. */
export function makeTwoHosts(): TwoHosts {
  const id = `${process.pid % 10000}y${++seq}`;
  const source = `ebn-s${id}`;
  const target = `ebn-t${id}`;
  const n = (process.pid + seq * 13) % 250;
  const h: TwoHosts = {
    source,
    target,
    targetIf: `ebt${id}`,
    sourceIp: `10.198.${n}.1`,
    targetIp: `10.198.${n}.2`,
    sourceIp6: `fd00:198:${n.toString(16)}::1`,
    targetIp6: `fd00:198:${n.toString(16)}::2`,
    cleanup() {
      for (const ns of [source, target]) {
        try {
          run(['netns', 'del', ns]);
        } catch {
          /* already gone */
        }
      }
    },
  };
  const srcIf = `ebs${id}`;
  try {
    run(['netns', 'add', source]);
    run(['netns', 'add', target]);
    run(['link', 'add', srcIf, 'netns', source, 'type', 'veth', 'peer', 'name', h.targetIf, 'netns', target]);
    for (const [ns, ifn, ip, ip6] of [
      [source, srcIf, h.sourceIp, h.sourceIp6],
      [target, h.targetIf, h.targetIp, h.targetIp6],
    ]) {
      run(['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', ifn]);
      run(['-n', ns, 'addr', 'add', `${ip6}/64`, 'dev', ifn, 'nodad']);
      run(['-n', ns, 'link', 'set', ifn, 'up']);
      run(['-n', ns, 'link', 'set', 'lo', 'up']);
    }
  } catch (e) {
    h.cleanup();
    throw e;
  }
  return h;
}
