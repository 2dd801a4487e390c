// SPDX-License-Identifier: Apache-2.0
// The runtime against the real kernel, with the selftest object: maps through the generated codecs,
// BPF_PROG_TEST_RUN verdicts, const volatile configuration, the ring buffer, attach and detach.
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { EbpfnetError, NotSupportedError, VerifierError } from '../../src/errors.js';
import * as G from '../../src/gen/selftest.js';
import { libbpf } from '../../src/libbpf/index.js';
import {
  BpfObject,
  ObjectSpec,
  RingBuffer,
  XDP,
  ensureBpffs,
  ensureCgroup2,
  liveCount,
  objectPath,
  openPinnedLink,
  openPinnedMap,
  packageDir,
  progInfo,
  progInfoByFd,
} from '../../src/loader/index.js';
import { describeKernel, ok, sh, xdpOn } from '../helpers/kernel.js';
import { makeNetns, makeVethPair, type Netns, type VethPair } from '../helpers/netns.js';
import { existsSync, mkdirSync, rmSync, rmdirSync } from 'node:fs';

function loadSelftest(cfg: Partial<G.StConfig> = {}): BpfObject {
  const spec = ObjectSpec.open(objectPath(G.LAYOUT.object));
  spec.setConst(G.RODATA.name, G.RODATA.codec, { default_action: XDP.PASS, emit_events: 0, target_tgid: 0, deny_port: 0, ...cfg });
  return spec.load();
}

const packet = (word: number, len = 64): Buffer => {
  const b = Buffer.alloc(len);
  b.writeUInt32BE(word >>> 0, 0);
  return b;
};

describeKernel('runtime: selftest object in the kernel', () => {
  let obj: BpfObject;
  beforeAll(() => {
    obj = loadSelftest();
  });
  afterAll(() => obj?.close());

  it('reports verifier statistics for each loaded program', () => {
    const s = obj.verifierStats.get(G.PROG_ST_XDP.name);
    expect(s?.insns).toBeGreaterThan(10);
    expect(s?.states).toBeGreaterThan(0);
  });

  it('round-trips hash entries through the generated codecs, iterates and deletes', () => {
    const rules = obj.map(G.ST_RULES);
    rules.clear();
    rules.update({ word: 0xdeadbeef }, { action: XDP.DROP, cookie: 0x1122334455667788n });
    rules.update({ word: 7 }, { action: XDP.TX, cookie: 1n });
    expect(rules.lookup({ word: 0xdeadbeef })).toEqual({ action: XDP.DROP, cookie: 0x1122334455667788n });
    expect(rules.lookup({ word: 8 })).toBeUndefined();
    expect([...rules.keys()].map((k) => k.word).sort((a, b) => a - b)).toEqual([7, 0xdeadbeef]);
    expect(rules.entries()).toHaveLength(2);
    expect(() => rules.update({ word: 7 }, { action: 0, cookie: 0n }, 'noexist')).toThrow(/already exists/);
    expect(rules.delete({ word: 7 })).toBe(true);
    expect(rules.delete({ word: 7 })).toBe(false);
    rules.clear();
    expect(rules.entries()).toHaveLength(0);
  });

  it('batch-updates and batch-reads many entries, and a full map is a clear error', () => {
    const rules = obj.map(G.ST_RULES);
    rules.clear();
    const n = G.ST_RULES.maxEntries;
    const entries = Array.from({ length: n }, (_, i): [G.StKey, G.StRule] => [{ word: i + 1 }, { action: XDP.PASS, cookie: BigInt(i) }]);
    expect(rules.updateBatch(entries)).toBe(n);
    const back = rules.lookupBatch();
    expect(back).toHaveLength(n);
    expect(new Map(back!.map(([k, v]) => [k.word, v.cookie])).get(500)).toBe(499n);
    // a limit is for arrays (their low indexes); a hash map is read whole
    expect(rules.lookupBatch(4096, 10)).toHaveLength(n);
    const plain = obj.map(G.ST_PLAIN);
    expect(plain.lookupBatch(4096, 5)!.map(([k]) => k)).toEqual([0, 1, 2, 3, 4]);
    expect(plain.lookupBatch(4, 10)!.map(([k]) => k)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let err: unknown;
    try {
      rules.update({ word: n + 1 }, { action: XDP.PASS, cookie: 0n });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EbpfnetError);
    expect((err as EbpfnetError).code).toBe('EBPFNET_MAP_FULL');
    expect(rules.lookup({ word: 1 })).toEqual({ action: XDP.PASS, cookie: 0n });
    rules.clear();
  });

  it('array maps with scalar keys and values', () => {
    const plain = obj.map(G.ST_PLAIN);
    plain.update(3, 0xffff_ffff_ffffn);
    expect(plain.lookup(3)).toBe(0xffff_ffff_ffffn);
    expect(plain.lookup(4)).toBe(0n);
    expect(() => plain.update(16, 1n)).toThrow(EbpfnetError);
  });

  it('BPF_PROG_TEST_RUN returns the rule verdict and counts per-CPU packets summed', () => {
    const rules = obj.map(G.ST_RULES);
    const counters = obj.map(G.ST_COUNTERS);
    counters.update(0, { packets: 0n, bytes: 0n, lost: 0n, calls: 0n });
    rules.update({ word: 0x0a0b0c0d }, { action: XDP.DROP, cookie: 9n });
    const prog = obj.program(G.PROG_ST_XDP);
    expect(prog.testRun({ data: packet(0x0a0b0c0d) }).retval).toBe(XDP.DROP);
    expect(prog.testRun({ data: packet(0x01010101), repeat: 99 }).retval).toBe(XDP.PASS);
    const sum = counters.lookup(0)!;
    expect(sum.packets).toBe(100n);
    expect(sum.bytes).toBe(6400n);
    const perCpu = counters.lookupPerCpu(0)!;
    expect(perCpu.reduce((a, c) => a + c.packets, 0n)).toBe(100n);
    rules.clear();
  });

  it('opens pinned maps and keeps their content', () => {
    ensureBpffs();
    const dir = `/sys/fs/bpf/ebpfnet-test-${process.pid}`;
    mkdirSync(dir, { recursive: true });
    try {
      const rules = obj.map(G.ST_RULES);
      rules.update({ word: 42 }, { action: XDP.DROP, cookie: 42n });
      rules.pin(`${dir}/rules`);
      const again = openPinnedMap(`${dir}/rules`, G.ST_RULES);
      expect(again.lookup({ word: 42 })).toEqual({ action: XDP.DROP, cookie: 42n });
      again.close();
      expect(() => openPinnedMap(`${dir}/rules`, G.ST_EVENTS)).toThrow(/layout says/);
      rules.unpin();
      expect(existsSync(`${dir}/rules`)).toBe(false);
      expect(() => openPinnedMap(`${dir}/rules`, G.ST_RULES)).toThrow(/nothing is pinned there/);
      rules.clear();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describeKernel('runtime: const volatile configuration', () => {
  it('the default verdict is a load-time constant', () => {
    for (const action of [XDP.PASS, XDP.DROP]) {
      const o = loadSelftest({ default_action: action });
      try {
        expect(o.program(G.PROG_ST_XDP).testRun({ data: packet(1) }).retval).toBe(action);
      } finally {
        o.close();
      }
    }
  });
});

describeKernel('runtime: ring buffer', () => {
  it('delivers N events in order with none lost', () => {
    const o = loadSelftest({ emit_events: 1 });
    try {
      const counters = o.map(G.ST_COUNTERS);
      const rb = new RingBuffer(o.map(G.ST_EVENTS), G.StEvent, { lost: () => counters.lookup(0)!.lost });
      o.map(G.ST_RULES).update({ word: 5 }, { action: XDP.PASS, cookie: 77n });
      const N = 50_000;
      o.program(G.PROG_ST_XDP).testRun({ data: packet(5, 60), repeat: N });
      const seen: bigint[] = [];
      rb.consume((e) => {
        expect(e.cookie).toBe(77n);
        expect(e.len).toBe(60);
        seen.push(e.seq);
      });
      expect(seen).toHaveLength(N);
      expect(seen[0]).toBe(1n);
      expect(seen[N - 1]).toBe(BigInt(N));
      expect(rb.stats()).toEqual({ records: N, lost: 0n });
      expect(rb.pending()).toBe(0);
      rb.close();
    } finally {
      o.close();
    }
  });

  it('counts events the kernel could not reserve when the buffer is full', () => {
    const o = loadSelftest({ emit_events: 1 });
    try {
      const counters = o.map(G.ST_COUNTERS);
      const rb = new RingBuffer(o.map(G.ST_EVENTS), G.StEvent, { lost: () => counters.lookup(0)!.lost });
      const capacity = G.ST_EVENTS.maxEntries / (8 + G.StEvent.size);
      const N = Math.ceil(capacity) + 1000;
      o.program(G.PROG_ST_XDP).testRun({ data: packet(5), repeat: N });
      const got = rb.consume(() => {});
      const { lost } = rb.stats();
      expect(got).toBeGreaterThan(0);
      expect(lost).toBeGreaterThan(0n);
      expect(BigInt(got) + lost).toBe(BigInt(N));
      rb.close();
    } finally {
      o.close();
    }
  });
});

describeKernel('runtime: attach and detach', () => {
  // the veth's host end, or a lone namespace, is where this process runs its test (never the root's)
  let veth: VethPair | null = null;
  let lone: Netns | null = null;
  afterEach(() => {
    veth?.cleanup();
    veth = null;
    lone?.cleanup();
    lone = null;
  });

  it('XDP on a veth drops real packets, and detaching leaves no program behind', () => {
    veth = makeVethPair();
    expect(ok('ping', ['-c', '1', '-W', '1', veth.hostIp], veth.ns)).toBe(true);
    const o = loadSelftest({ default_action: XDP.DROP });
    // this object's program, by id (other processes load st_xdp too)
    const id = progInfoByFd(o.program(G.PROG_ST_XDP).fd)!.id;
    const link = o.program(G.PROG_ST_XDP).attachXdp(veth.host, { mode: 'auto' });
    expect(link.mode).toBe('native');
    expect(xdpOn(veth.host)).toBe(true);
    const pkts = o.map(G.ST_COUNTERS).lookup(0)!.packets;
    expect(ok('ping', ['-c', '2', '-W', '1', veth.hostIp], veth.ns)).toBe(false);
    expect(o.map(G.ST_COUNTERS).lookup(0)!.packets).toBeGreaterThan(pkts);
    link.close();
    o.close();
    expect(xdpOn(veth.host)).toBe(false);
    expect(ok('ping', ['-c', '1', '-W', '1', veth.hostIp], veth.ns)).toBe(true);
    expect(progInfo(id)).toBeNull();
  });

  it('generic mode can be asked for explicitly, and a second XDP program is refused', () => {
    veth = makeVethPair();
    const o = loadSelftest();
    try {
      const link = o.program(G.PROG_ST_XDP).attachXdp(veth.host, { mode: 'generic' });
      expect(link.mode).toBe('generic');
      expect(() => o.program(G.PROG_ST_XDP).attachXdp(veth.host, { mode: 'generic' })).toThrow(/another XDP program/);
      link.close();
      expect(xdpOn(veth.host)).toBe(false);
    } finally {
      o.close();
    }
  });

  it('an unknown interface names the ones that exist', () => {
    const o = loadSelftest();
    try {
      expect(() => o.program(G.PROG_ST_XDP).attachXdp('eth9nope')).toThrow(/no interface named eth9nope; interfaces here: .*lo/);
    } finally {
      o.close();
    }
  });

  it('a pinned link survives close() and goes away when detached', () => {
    veth = makeVethPair();
    ensureBpffs();
    const path = `/sys/fs/bpf/ebpfnet-test-link-${process.pid}`;
    const o = loadSelftest({ default_action: XDP.PASS });
    const link = o.program(G.PROG_ST_XDP).attachXdp(veth.host);
    link.pin(path);
    link.close();
    o.close();
    expect(xdpOn(veth.host)).toBe(true);
    const again = openPinnedLink(path);
    again.detach();
    expect(existsSync(path)).toBe(false);
    expect(xdpOn(veth.host)).toBe(false);
  });

  it('a tracepoint counts exactly the calls made, and stops counting once detached', () => {
    const o = loadSelftest({ target_tgid: process.pid });
    try {
      const counters = o.map(G.ST_COUNTERS);
      const link = o.program(G.PROG_ST_GETPGID).attachTracepoint('syscalls', 'sys_enter_getpgid');
      for (let i = 0; i < 25; i++) libbpf().getpgid(0);
      expect(counters.lookup(0)!.calls).toBe(25n);
      link.close();
      for (let i = 0; i < 5; i++) libbpf().getpgid(0);
      expect(counters.lookup(0)!.calls).toBe(25n);
    } finally {
      o.close();
    }
  });

  it('a cgroup connect4 hook applies to processes in the cgroup only, until detached', () => {
    // the loopback connects go to a namespace of the test's own
    lone = makeNetns();
    const port = 40000 + (process.pid % 20000);
    const cg = join(ensureCgroup2().path, `ebpfnet-test-${process.pid}`);
    mkdirSync(cg);
    // Each connect goes to a closed loopback port: ECONNREFUSED normally, EPERM when the hook refuses.
    const connect = (inCgroup: boolean): string => {
      const js = `require('net').connect(${port},'127.0.0.1').on('error',e=>{console.log(e.code)}).on('connect',()=>console.log('CONNECTED'))`;
      const cmd = `${inCgroup ? `echo $$ > ${cg}/cgroup.procs && ` : ''}exec ${process.execPath} -e "${js}"`;
      return sh('sh', ['-c', cmd]).trim();
    };
    const o = loadSelftest({ deny_port: port });
    try {
      const link = o.program(G.PROG_ST_CONNECT4).attachCgroup(cg);
      expect(connect(true)).toBe('EPERM');
      expect(connect(false)).toBe('ECONNREFUSED');
      link.close();
      expect(connect(true)).toBe('ECONNREFUSED');
    } finally {
      o.close();
      rmdirSync(cg);
    }
  });

  it('a missing tracepoint is a NotSupportedError, not a crash', () => {
    const o = loadSelftest();
    try {
      expect(() => o.program(G.PROG_ST_GETPGID).attachTracepoint('syscalls', 'sys_enter_nosuchcall')).toThrow(NotSupportedError);
    } finally {
      o.close();
    }
  });

  it('closes every kernel object it opened', () => {
    expect(liveCount()).toBe(0);
  });
});

describeKernel('runtime: verifier rejection', () => {
  it('raises a VerifierError carrying the full log and naming the program', () => {
    const spec = ObjectSpec.open(join(packageDir(), 'build', 'fixtures', 'reject.bpf.o'));
    let err: unknown;
    try {
      spec.load();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VerifierError);
    const v = err as VerifierError;
    expect(v.program).toBe('reject_xdp');
    expect(v.log).toMatch(/invalid access to packet/);
    expect(v.message).toMatch(/^load program reject_xdp: the verifier rejected it: .*invalid access to packet/);
    expect(v.log.split('\n').length).toBeGreaterThan(3);
  });
});
