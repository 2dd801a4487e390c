// SPDX-License-Identifier: Apache-2.0
// @ts-check
// Part (a), connection tracking (issue #15): the probes testrun.mjs measures in the same interleaved
// rounds as its other rows, each with the harness row it is net of (the same packet through a
// program that returns at once: pass_xdp, pass_tc for the tc egress hook, rotate_xdp -> pass_xdp for
// the rotating rows). Rows:
//   reference    the stateless 2-rule filter (--deny tcp/22 --deny icmp) on the established reply's
//                packet, the same packet the established row sees
//   ingress      the stateful filter (--default deny --allow tcp/22 --allow udp/53, state on, the
//                production clock): an established reply (its flow in flt_ct), a new inbound UDP
//                datagram (looked up, missed, dropped by the default) and a new inbound SYN (no lookup)
//   egress       filter_egress (tc egress) on an outbound packet of an established flow (a lookup and a
//                refresh) and on an outbound SYN (a new flow written each packet)
//   table        1,000 and 1,000,000 tracked flows (flt_ct sized 1,310,720 for both, filled by batch
//                updates): rotating (each packet another flow, ct.bpf.c's rotate_xdp tail-calling the
//                filter: what a busy host sees, cache misses included) and one flow (the same packet
//                again and again: the best case, the flow always in cache)
//   table choice the kernel's conntrack through bpf_xdp_ct_lookup / bpf_ct_release for a flow that
//                exists in nf_conntrack (a real TCP connection in a namespace of the bench's, looked up
//                through its namespace id) against one lookup in an LRU hash keyed like flt_ct, same parse
//   profile      one per-CPU counter bump, one 40-byte-key hash lookup, one coarse clock read: what the
//                2-rule filter (it counts) and the tracker (it looks up and reads the clock) cannot skip
// Every verdict is checked; the table and established rows also check the filter's "established"
// counter moved by exactly the repeat count (every packet found its flow).
import { execFileSync, spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import { join } from 'node:path';
import { BenchError, dist, root, sh } from './util.mjs';

const XDP_DROP = 1;
const XDP_PASS = 2;
const TC_ACT_OK = 0;
/** flt_ct's size for the table rows: 1,000,000 flows and room, so the LRU evicts none of them */
export const CT_MAX = 1_310_720;
export const TABLE_SIZES = [1_000, 1_000_000];
/** the rotating rows' remote addresses: 10.128.0.0 + i */
const ROT_BASE = (10 << 24) | (128 << 16);
/** the kfunc rows' namespace: a TCP connection 10.198.0.2:40000 -> 10.198.0.1:443 on its lo */
const KF = { local: '10.198.0.2', remote: '10.198.0.1', lport: 40000, rport: 443 };

/** bpf_prog_info of a program: its id, and sizes (xlated: 8-byte BPF instructions after the verifier). */
export async function progInfo(/** @type {number} */ fd) {
  const { libbpf } = await dist('libbpf/index.js');
  const buf = Buffer.alloc(256);
  const len = [buf.length];
  if (libbpf().bpf_obj_get_info_by_fd(fd, buf, len) < 0) throw new BenchError('bpf_obj_get_info_by_fd failed');
  return { id: buf.readUInt32LE(4), jitedBytes: buf.readUInt32LE(16), xlatedInsns: buf.readUInt32LE(20) / 8 };
}

/** Puts program `progFd` in slot 0 of the prog array of program `fromFd` (found by name through bpftool). */
async function setTailCall(/** @type {number} */ fromFd, /** @type {string} */ mapName, /** @type {number} */ progFd) {
  const { libbpf } = await dist('libbpf/index.js');
  const { id } = await progInfo(fromFd);
  const ids = JSON.parse(sh('bpftool', ['prog', 'show', 'id', String(id), '--json'])).map_ids ?? [];
  const mid = ids.find((/** @type {number} */ m) => JSON.parse(sh('bpftool', ['map', 'show', 'id', String(m), '--json'])).name === mapName);
  if (mid === undefined) throw new BenchError(`program ${id} uses no map ${mapName}`);
  const fd = libbpf().bpf_map_get_fd_by_id(mid);
  if (fd < 0) throw new BenchError(`open map ${mid}: errno ${-fd}`);
  try {
    const k = Buffer.alloc(4);
    const v = Buffer.alloc(4);
    v.writeUInt32LE(progFd);
    const rc = libbpf().bpf_map_update_elem(fd, k, v, 0n);
    if (rc < 0) throw new BenchError(`set the tail call of ${mapName}: errno ${-rc} (the programs are not compatible)`);
  } finally {
    closeSync(fd);
  }
}

/**
 * FilterDatapath.load with flt_ct sized to `ctMax`: the loader sizes maps before load
 * (ObjectSpec.setMaxEntries); FilterDatapath.load takes no table size (yet), so its load() is
 * wrapped for this one call.
 */
function loadSized(/** @type {any} */ L, /** @type {any} */ FilterDatapath, /** @type {number} */ ctMax) {
  const orig = L.ObjectSpec.prototype.load;
  L.ObjectSpec.prototype.load = function (/** @type {any} */ opts) {
    if (this.maps().some((/** @type {any} */ m) => m.name === 'flt_ct')) this.setMaxEntries('flt_ct', ctMax);
    return orig.call(this, opts);
  };
  try {
    return FilterDatapath.load('lo');
  } finally {
    L.ObjectSpec.prototype.load = orig;
  }
}

/**
 * The namespace of the kfunc rows: lo with both addresses, an nftables rule that makes conntrack
 * track this namespace, and a real TCP connection held open by a child process, so nf_conntrack
 * has an ESTABLISHED entry. Its id in this (the bench's) namespace goes to kfunc_xdp.
 * @param {import('./veth.mjs').Live} live
 */
async function conntrackNamespace(live) {
  const ns = `ebpfnet-fb-ct${process.pid}`;
  sh('ip', ['netns', 'add', ns]);
  live.netns.add(ns);
  sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  for (const a of [KF.local, KF.remote]) sh('ip', ['-n', ns, 'addr', 'add', `${a}/32`, 'dev', 'lo']);
  sh('nft', ['-f', '-'], { ns, input: 'table inet ebpfnet_bench {\n  chain out {\n    type filter hook output priority 0; policy accept;\n    ct state established,related,new accept\n  }\n}\n' });
  const js = `const net = require('net');
net.createServer(() => {}).listen(${KF.rport}, '${KF.remote}', () => {
  net.connect({ host: '${KF.remote}', port: ${KF.rport}, localAddress: '${KF.local}', localPort: ${KF.lport} }, () => console.log('connected'));
});
setInterval(() => {}, 1 << 30);`;
  const child = spawn('nsenter', [`--net=/run/netns/${ns}`, process.execPath, '-e', js], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.children.add(child);
  child.on('close', () => live.children.delete(child));
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const deadline = Date.now() + 20_000;
  while (!out.includes('connected')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new BenchError(`conntrack namespace: the TCP connection did not open: ${err.trim() || 'no "connected" within 20 s'}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  sh('ip', ['netns', 'set', ns, 'auto']);
  const m = new RegExp(`^${ns} \\(id: (\\d+)\\)`, 'm').exec(sh('ip', ['netns', 'list']));
  if (!m) throw new BenchError(`ip netns set ${ns} auto gave it no id`);
  return {
    nsid: Number(m[1]),
    close() {
      child.kill('SIGKILL');
      try {
        sh('ip', ['netns', 'del', ns]);
      } catch {
        // gone already (the run's cleanup)
      }
      live.netns.delete(ns);
    },
  };
}

/**
 * @typedef {{ name: string, group: string, prog: any, data: Buffer, expect: number, harness: string | null, arm?: () => void, check?: () => void, note?: string }} Probe
 *   harness: the name of the probe this one is net of (null: a harness itself); arm runs before the
 *   timed calls, check after each
 * @param {{ repeat: number, live: import('./veth.mjs').Live, log: (s: string) => void }} o
 * @returns {Promise<{ probes: Probe[], profile: any[], close: () => void }>}
 */
export async function ctProbes(o) {
  const L = await dist('loader/index.js');
  const F = await dist('gen/filter.js');
  const { FilterDatapath } = await dist('filter/datapath.js');
  const { makePolicy } = await dist('filter/policy.js');
  const { buildPacket, parsePacket, TCP } = await dist('filter/packet.js');
  /** @type {(() => void)[]} */
  const closers = [];
  const close = () => {
    for (const c of closers.reverse()) c();
  };
  try {
    const pkt = (/** @type {string} */ text, /** @type {number} */ tcpFlags = TCP.ack) => buildPacket({ ...parsePacket(text), tcpFlags });
    const E = pkt('tcp 10.0.0.1:443 -> 10.0.0.2:40000');
    const NEW_UDP = pkt('udp 10.0.0.1:5555 -> 10.0.0.2:5353');
    const NEW_SYN = pkt('tcp 10.0.0.1:5555 -> 10.0.0.2:80', TCP.syn);
    const OUT = pkt('tcp 10.0.0.2:40000 -> 10.0.0.1:443');
    const OUT_SYN = pkt('tcp 10.0.0.2:40001 -> 10.0.0.1:443', TCP.syn);
    const ROT = pkt('tcp 10.128.0.0:443 -> 10.0.0.2:40000');
    const K = pkt(`tcp ${KF.remote}:${KF.rport} -> ${KF.local}:${KF.lport}`);

    const bench = join(root, 'build', 'bench');
    const passObj = L.ObjectSpec.open(join(bench, 'pass.bpf.o')).load();
    closers.push(() => passObj.close());
    const passXdp = passObj.program('pass_xdp');
    const passTc = passObj.program('pass_tc');

    const v4 = (/** @type {number} */ a) => {
      const b = new Uint8Array(16);
      new DataView(b.buffer).setUint32(0, a >>> 0);
      return b;
    };
    const ip = (/** @type {string} */ s) => s.split('.').reduce((a, x) => a * 256 + Number(x), 0);
    const flowKey = (/** @type {number} */ raddr, lport = 40000) => ({ laddr: v4(ip('10.0.0.2')), raddr: v4(raddr), lport, rport: 443, proto: 6, family: F.FLT_FAMILY_V4 });
    const flowVal = () => ({ last_seen: process.hrtime.bigint(), state: F.FLT_CT_ESTABLISHED, flags: F.FLT_CT_F_REPLIED });
    const stateOn = (/** @type {any} */ d) => {
      const ct = d.conntrack();
      // the production clock (now = 0: bpf_ktime_get_coarse_ns) and the default timeouts
      ct.cfg.set(0, { ...ct.cfg.get(0), stateful: 1, now: 0n });
      return ct;
    };
    /** per filter: its "established" counter when last read (rows on one filter share it) */
    const seen = new Map();
    /** arm (before the timed calls) and check (after each): every packet of the call passed as established */
    const countsEstablished = (/** @type {any} */ d, /** @type {string} */ what) => ({
      arm: () => seen.set(d, d.counters().established.packets),
      check: () => {
        const now = d.counters().established.packets;
        if (now - seen.get(d) !== BigInt(o.repeat)) throw new BenchError(`${what}: ${now - seen.get(d)} of ${o.repeat} packets passed as established (a flow was missing or expired)`);
        seen.set(d, now);
      },
    });
    o.log('test run: loading the connection-tracking rows');
    const stateless = FilterDatapath.load('lo');
    closers.push(() => stateless.close());
    stateless.apply(makePolicy({ deny: ['tcp/22', 'icmp'] }));
    const strict = makePolicy({ default: 'deny', allow: ['tcp/22', 'udp/53'] });
    const sf = FilterDatapath.load('lo');
    closers.push(() => sf.close());
    sf.apply(strict);
    const sct = stateOn(sf);
    sct.flows.update(flowKey(ip('10.0.0.1')), flowVal());

    // the two tables, both sized for 1,000,000 flows
    /** @type {{ n: number, d: any, fillMs: number, keysOf: (write: (keys: Buffer, vals: Buffer, n: number) => void) => void }[]} */
    const tables = [];
    for (const n of TABLE_SIZES) {
      const d = loadSized(L, FilterDatapath, CT_MAX);
      closers.push(() => d.close());
      d.apply(strict);
      const ct = stateOn(d);
      if (ct.flows.capacity !== CT_MAX) throw new BenchError(`flt_ct has ${ct.flows.capacity} entries, not ${CT_MAX}: the size was not applied`);
      const t0 = performance.now();
      const CHUNK = 65536;
      const keys = Buffer.alloc(F.FltCtKey.size * CHUNK);
      const vals = Buffer.alloc(F.FltCtVal.size * CHUNK);
      for (let i = 0; i < CHUNK; i++) F.FltCtVal.encode(flowVal(), vals, i * F.FltCtVal.size);
      const template = F.FltCtKey.encode(flowKey(0));
      /** the n flows, chunk by chunk, to `write` */
      const keysOf = (/** @type {(keys: Buffer, vals: Buffer, n: number) => void} */ write) => {
        for (let at = 0; at < n; at += CHUNK) {
          const m = Math.min(CHUNK, n - at);
          for (let i = 0; i < m; i++) {
            template.copy(keys, i * F.FltCtKey.size);
            keys.writeUInt32BE((ROT_BASE + at + i) >>> 0, i * F.FltCtKey.size + 16);
          }
          write(keys, vals, m);
        }
      };
      keysOf((k, v, m) => ct.flows.updateBatchEncoded(k, v, m));
      const ms = performance.now() - t0;
      const held = ct.flows.count();
      if (held !== n) throw new BenchError(`flt_ct holds ${held} flows after writing ${n} (evicted?)`);
      o.log(`test run: ${n.toLocaleString('en-US')} flows written in ${Math.round(ms)} ms (batch updates)`);
      tables.push({ n, d, fillMs: ms, keysOf });
    }

    // rotate_xdp -> pass_xdp (the harness of the rotating rows) and -> each table's filter_xdp
    const rotate = async (/** @type {number} */ n, /** @type {any} */ target) => {
      const obj = L.ObjectSpec.open(join(bench, 'ct.bpf.o')).load({ only: ['rotate_xdp'] });
      closers.push(() => obj.close());
      const cfg = obj.map({ name: 'rot_cfg', type: 'array', maxEntries: 2, key: L.scalar.u32, value: L.scalar.u64, record: null });
      cfg.update(0, (BigInt(ROT_BASE) << 32n) | BigInt(n));
      cfg.update(1, 0n);
      const prog = obj.program('rotate_xdp');
      await setTailCall(prog.fd, 'rot_next', target.fd);
      return prog;
    };
    const rotHarness = await rotate(TABLE_SIZES[TABLE_SIZES.length - 1], passXdp);

    // the kfunc rows
    const nsCt = await conntrackNamespace(o.live);
    closers.push(() => nsCt.close());
    const kobj = L.ObjectSpec.open(join(bench, 'ct.bpf.o')).setConst('kf_netns', L.scalar.s32, nsCt.nsid).load();
    closers.push(() => kobj.close());
    const own = kobj.map({ name: 'own_ct', type: 'lru_hash', maxEntries: 65536, key: F.FltCtKey, value: F.FltCtVal, record: null });
    own.update({ laddr: v4(ip(KF.local)), raddr: v4(ip(KF.remote)), lport: KF.lport, rport: KF.rport, proto: 6, family: F.FLT_FAMILY_V4 }, flowVal());
    const oneHash = kobj.map({ name: 'one_hash', type: 'hash', maxEntries: 1024, key: F.FltCtKey, value: F.FltCtVal, record: null });
    oneHash.update({ laddr: new Uint8Array(16), raddr: new Uint8Array(16), lport: 0, rport: 0, proto: 0, family: 0 }, flowVal());

    /** @type {Probe[]} */
    const probes = [
      { name: 'harness: XDP_PASS, reply packet', group: 'harness', prog: passXdp, data: E, expect: XDP_PASS, harness: null },
      { name: 'harness: XDP_PASS, new UDP', group: 'harness', prog: passXdp, data: NEW_UDP, expect: XDP_PASS, harness: null },
      { name: 'harness: XDP_PASS, new SYN', group: 'harness', prog: passXdp, data: NEW_SYN, expect: XDP_PASS, harness: null },
      { name: 'harness: tc TC_ACT_OK, outbound', group: 'harness', prog: passTc, data: OUT, expect: TC_ACT_OK, harness: null },
      { name: 'harness: tc TC_ACT_OK, outbound SYN', group: 'harness', prog: passTc, data: OUT_SYN, expect: TC_ACT_OK, harness: null },
      { name: 'harness: rotate -> XDP_PASS', group: 'harness', prog: rotHarness, data: ROT, expect: XDP_PASS, harness: null },
      { name: 'harness: XDP_PASS, table packet', group: 'harness', prog: passXdp, data: ROT, expect: XDP_PASS, harness: null },
      { name: 'harness: XDP_PASS, kfunc packet', group: 'harness', prog: passXdp, data: K, expect: XDP_PASS, harness: null },

      { name: 'stateless 2 rules, the reply packet', group: 'ingress', prog: stateless.program('xdp'), data: E, expect: XDP_PASS, harness: 'harness: XDP_PASS, reply packet', note: '--deny tcp/22 --deny icmp, passed by the default' },
      { name: 'stateful: established reply', group: 'ingress', prog: sf.program('xdp'), data: E, expect: XDP_PASS, harness: 'harness: XDP_PASS, reply packet', ...countsEstablished(sf, 'established reply'), note: 'tcp 10.0.0.1:443 -> 10.0.0.2:40000 ACK, its flow in flt_ct' },
      { name: 'stateful: new inbound UDP', group: 'ingress', prog: sf.program('xdp'), data: NEW_UDP, expect: XDP_DROP, harness: 'harness: XDP_PASS, new UDP', note: 'udp to 5353: looked up, not found, default deny' },
      { name: 'stateful: new inbound SYN', group: 'ingress', prog: sf.program('xdp'), data: NEW_SYN, expect: XDP_DROP, harness: 'harness: XDP_PASS, new SYN', note: 'tcp SYN to 80: no lookup, default deny' },
      { name: 'egress: established outbound', group: 'egress', prog: sct.egress, data: OUT, expect: TC_ACT_OK, harness: 'harness: tc TC_ACT_OK, outbound', note: 'tcp 10.0.0.2:40000 -> 10.0.0.1:443 ACK: lookup, refresh' },
      { name: 'egress: new outbound SYN', group: 'egress', prog: sct.egress, data: OUT_SYN, expect: TC_ACT_OK, harness: 'harness: tc TC_ACT_OK, outbound SYN', note: 'a flow written each packet' },
    ];
    // the same tables without the filter: an LRU hash alone, sized and filled alike, through the
    // same rotation (own_xdp keys the packet as flt_ct): what the memory of a big table costs any
    // lookup, whoever does it
    for (const { n, keysOf } of tables) {
      const obj = L.ObjectSpec.open(join(bench, 'ct.bpf.o')).setMaxEntries('own_ct', CT_MAX).load({ only: ['own_xdp'] });
      closers.push(() => obj.close());
      const m = obj.map({ name: 'own_ct', type: 'lru_hash', maxEntries: 65536, key: F.FltCtKey, value: F.FltCtVal, record: null });
      keysOf((keys, vals, k) => m.updateBatchEncoded(keys, vals, k));
      if (m.count() !== n) throw new BenchError(`own_ct holds ${m.count()} flows after writing ${n}`);
      const rp = await rotate(n, obj.program('own_xdp'));
      const label = n.toLocaleString('en-US');
      probes.push({ name: `LRU hash alone, ${label} flows: rotating`, group: 'table', prog: rp, data: ROT, expect: XDP_PASS, harness: 'harness: rotate -> XDP_PASS', note: 'one lookup, no filter: the table\'s own cost' });
    }
    for (const { n, d } of tables) {
      const label = n.toLocaleString('en-US');
      const rp = await rotate(n, d.program('xdp'));
      probes.push({ name: `table ${label} flows: rotating`, group: 'table', prog: rp, data: ROT, expect: XDP_PASS, harness: 'harness: rotate -> XDP_PASS', ...countsEstablished(d, `${label} flows, rotating`), note: 'each packet another flow' });
      probes.push({ name: `table ${label} flows: one flow`, group: 'table', prog: d.program('xdp'), data: ROT, expect: XDP_PASS, harness: 'harness: XDP_PASS, table packet', ...countsEstablished(d, `${label} flows, one flow`), note: 'the same flow every packet' });
    }
    probes.push(
      { name: 'kernel conntrack kfunc lookup', group: 'choice', prog: kobj.program('kfunc_xdp'), data: K, expect: XDP_PASS, harness: 'harness: XDP_PASS, kfunc packet', note: 'bpf_xdp_ct_lookup + bpf_ct_release, an ESTABLISHED nf_conntrack entry' },
      { name: 'own LRU hash lookup', group: 'choice', prog: kobj.program('own_xdp'), data: K, expect: XDP_PASS, harness: 'harness: XDP_PASS, kfunc packet', note: 'the same parse, one lookup keyed as flt_ct' },
      { name: 'one per-CPU counter bump', group: 'profile', prog: kobj.program('counter_xdp'), data: E, expect: XDP_PASS, harness: 'harness: XDP_PASS, reply packet' },
      { name: 'one hash lookup, 40-byte key', group: 'profile', prog: kobj.program('hash_xdp'), data: E, expect: XDP_PASS, harness: 'harness: XDP_PASS, reply packet' },
      { name: 'one coarse clock read', group: 'profile', prog: kobj.program('coarse_xdp'), data: E, expect: XDP_PASS, harness: 'harness: XDP_PASS, reply packet' },
    );

    // sizes after the verifier: what each program is, instruction for instruction
    const floorObj = L.ObjectSpec.open(join(bench, 'floor.bpf.o')).load({ only: ['floor_xdp'] });
    closers.push(() => floorObj.close());
    /** @type {any[]} */
    const profile = [];
    for (const [name, prog] of /** @type {[string, any][]} */ ([
      ['floor (hand-written XDP)', floorObj.program('floor_xdp')],
      ['XDP_PASS', passXdp],
      ['ebpfnet filter_xdp (stateless 2 rules: same object)', stateless.program('xdp')],
      ['ebpfnet filter_egress', sct.egress],
      ['one per-CPU counter bump', kobj.program('counter_xdp')],
      ['one hash lookup', kobj.program('hash_xdp')],
      ['own LRU lookup (same parse as kfunc)', kobj.program('own_xdp')],
      ['kfunc lookup', kobj.program('kfunc_xdp')],
    ])) {
      const info = await progInfo(prog.fd);
      // helper and kfunc calls left after the verifier's inlining (map lookups of arrays are inlined)
      const text = execFileSync('bpftool', ['prog', 'dump', 'xlated', 'id', String(info.id)], { maxBuffer: 1 << 26 }).toString();
      const calls = [...text.matchAll(/\bcall ([\w#.]+)/g)].map((m) => m[1]);
      const tally = Object.entries(calls.reduce((/** @type {Record<string, number>} */ a, c) => ((a[c] = (a[c] ?? 0) + 1), a), {}))
        .map(([c, k]) => `${c}${k > 1 ? ` x${k}` : ''}`)
        .join(', ');
      profile.push({ name, ...info, calls: tally || 'none' });
    }
    const fills = tables.map((t) => ({ n: t.n, fillMs: t.fillMs }));
    return { probes, profile: Object.assign(profile, { fills }), close };
  } catch (e) {
    close();
    throw e;
  }
}
