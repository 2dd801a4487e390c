// SPDX-License-Identifier: Apache-2.0
// Topologies for kernel tests, made only of network namespaces the test creates: nothing (no
// interface, no address) ever goes into the root namespace, so tests on a shared machine neither
// see nor disturb each other's traffic. cleanup() removes everything made, and is safe to call twice.
//
// A test that acts "on the host" (attaches XDP in-process, starts the agent and fetches its API, runs
// balancer clients) does so from a namespace of its own: makeVethPair() and makeNetns() move the
// test process there (enterNetns, tools/lib/netns.mjs), and every child it starts goes with it.
import { execFileSync } from 'node:child_process';
import { enterNetns } from '../../tools/lib/netns.mjs';

export { currentNetnsInode, enterNetns, startNetnsInode } from '../../tools/lib/netns.mjs';

let seq = 0;

const run = (args: string[]): void => {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
};

export interface Netns {
  ns: string;
  cleanup(): void;
}

/**
 * A namespace of the test's own with only `lo` (up), entered at once: for tests whose traffic never
 * leaves the machine (loopback connects, an API on 127.0.0.1) but must not use the root's loopback.
 */
export function makeNetns(): Netns {
  const ns = `ebn-i${process.pid % 10000}x${++seq}`;
  let leave: (() => void) | null = null;
  const h: Netns = {
    ns,
    cleanup() {
      leave?.();
      leave = null;
      try {
        run(['netns', 'del', ns]);
      } catch {
        /* already gone */
      }
    },
  };
  try {
    run(['netns', 'add', ns]);
    run(['-n', ns, 'link', 'set', 'lo', 'up']);
    leave = enterNetns(ns);
  } catch (e) {
    h.cleanup();
    throw e;
  }
  return h;
}

export interface VethPair {
  /** the namespace of the far end (`peer`) */
  ns: string;
  /** the namespace of `host`: the test process is in it from makeVethPair() until cleanup() */
  hostNs: string;
  /** the test's end, in `hostNs` (where it attaches programs, runs the agent, or its clients) */
  host: string;
  /** the end inside `ns` */
  peer: string;
  hostIp: string;
  peerIp: string;
  cleanup(): void;
}

/**
 * A "host" and a peer: namespaces `hostNs` and `ns` joined by a veth pair, IPv4 addresses on both
 * ends, and the test process moved into `hostNs` (enterNetns), so code written for "the host's
 * interface" runs unchanged against `host` without touching the root namespace.
 */
export function makeVethPair(): VethPair {
  const n = (process.pid % 200) + 1;
  const id = `${process.pid % 10000}x${++seq}`;
  const hostNs = `ebn-h${id}`;
  const ns = `ebn-t${id}`;
  const host = `ebh${id}`;
  const peer = `ebp${id}`;
  const subnet = `10.199.${(n + seq * 7) % 250}`;
  let leave: (() => void) | null = null;
  const pair: VethPair = {
    ns,
    hostNs,
    host,
    peer,
    hostIp: `${subnet}.1`,
    peerIp: `${subnet}.2`,
    cleanup() {
      leave?.();
      leave = null;
      // the veth goes with either namespace
      for (const x of [hostNs, ns]) {
        try {
          run(['netns', 'del', x]);
        } catch {
          /* already gone */
        }
      }
    },
  };
  try {
    run(['netns', 'add', hostNs]);
    run(['netns', 'add', ns]);
    run(['link', 'add', host, 'netns', hostNs, 'type', 'veth', 'peer', 'name', peer, 'netns', ns]);
    for (const [x, ifn, ip] of [[hostNs, host, pair.hostIp], [ns, peer, pair.peerIp]]) {
      run(['-n', x, 'addr', 'add', `${ip}/24`, 'dev', ifn]);
      run(['-n', x, 'link', 'set', ifn, 'up']);
      run(['-n', x, 'link', 'set', 'lo', 'up']);
    }
    leave = enterNetns(hostNs);
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
