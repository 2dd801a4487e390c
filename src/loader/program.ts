// SPDX-License-Identifier: Apache-2.0
// BpfProgram: a loaded program. Attaching returns a Link; BPF_PROG_TEST_RUN runs it on crafted input.
import { openSync, closeSync } from 'node:fs';
import { EbpfnetError, errnoName, kernelError } from '../errors.js';
import { libbpf, LinkCreateOpts, sizeof, TestRunOpts, libbpfMark, libbpfMessagesSince } from '../libbpf/index.js';
import { checkPtr } from './fd.js';
import { ATTACH, progTypeName, XDP_FLAGS } from './kinds.js';
import { Link, XdpLink, type XdpMode } from './link.js';
import { ensureTracefs, ifindex as ifindexOf } from './system.js';
import { ensureCgroup2 } from './pinfs.js';
import { NotSupportedError } from '../errors.js';

export interface TestRunInput {
  data: Buffer;
  /** run it this many times; the reported duration is the mean per run */
  repeat?: number;
  /** room for the packet the program leaves behind (default: input length + 256) */
  dataOut?: number;
  ctx?: Buffer;
}

export interface TestRunResult {
  retval: number;
  /** mean ns per run, as the kernel measured it */
  durationNs: number;
  data: Buffer;
}

export interface XdpAttachOptions {
  mode?: XdpMode | 'auto';
}

/** A program of a loaded BpfObject: attach it to a hook by kind, or run it on crafted input. */
export class BpfProgram {
  readonly name: string;
  readonly type: number;
  readonly section: string;
  /** @internal programs come from BpfObject.program() */
  constructor(
    private readonly ptr: unknown,
    readonly objectName: string,
  ) {
    const b = libbpf();
    this.name = b.bpf_program__name(ptr as never);
    this.type = b.bpf_program__type(ptr as never);
    this.section = b.bpf_program__section_name(ptr as never);
  }

  get typeName(): string {
    return progTypeName(this.type);
  }

  get fd(): number {
    const fd = libbpf().bpf_program__fd(this.ptr as never);
    if (fd < 0) throw new EbpfnetError('EBPFNET_USAGE', `use program ${this.name}`, 'it is not loaded');
    return fd;
  }

  /** Runs the program once (or `repeat` times) on `data` with BPF_PROG_TEST_RUN: no interface involved. */
  testRun(input: TestRunInput): TestRunResult {
    const out = Buffer.alloc(input.dataOut ?? input.data.length + 256);
    const opts = {
      sz: sizeof(TestRunOpts),
      data_in: input.data,
      data_out: out,
      data_size_in: input.data.length,
      data_size_out: out.length,
      ctx_in: input.ctx ?? null,
      ctx_out: null,
      ctx_size_in: input.ctx?.length ?? 0,
      ctx_size_out: 0,
      retval: 0,
      repeat: input.repeat ?? 1,
      duration: 0,
      flags: 0,
      cpu: 0,
      batch_size: 0,
    };
    const rc = libbpf().bpf_prog_test_run_opts(this.fd, opts);
    if (rc < 0) throw kernelError(`test run of ${this.name}`, -rc);
    return { retval: opts.retval, durationNs: opts.duration, data: out.subarray(0, opts.data_size_out) };
  }

  /**
   * Attaches to an interface through a bpf_link, so the program goes away with the link (and the
   * process) unless pinned. `auto` tries the driver's native XDP and falls back to generic.
   */
  attachXdp(ifname: string, opts: XdpAttachOptions = {}): XdpLink {
    const ifindex = ifindexOf(ifname);
    const want = opts.mode ?? 'auto';
    const tries: XdpMode[] = want === 'auto' ? ['native', 'generic'] : [want];
    let last = 0;
    for (const mode of tries) {
      const flags = mode === 'native' ? XDP_FLAGS.DRV_MODE : XDP_FLAGS.SKB_MODE;
      const lopts = { sz: sizeof(LinkCreateOpts), flags, iter_info: null, iter_info_len: 0, target_btf_id: 0, u: [0n, 0n, 0n, 0n] };
      const fd = libbpf().bpf_link_create(this.fd, ifindex, ATTACH.XDP, lopts);
      if (fd >= 0) return new XdpLink(ifname, ifindex, mode, fd);
      last = -fd;
      const name = errnoName(last);
      if (name === 'EBUSY' || name === 'EEXIST') {
        throw new EbpfnetError('EBPFNET_EXISTS', `attach ${this.name} to ${ifname}`, 'another XDP program is attached there', {
          errno: last,
          hint: `see it with: ip link show ${ifname}`,
        });
      }
      if (!(name === 'EOPNOTSUPP' || name === 'ENOTSUPP' || name === 'EINVAL')) break;
    }
    if (errnoName(last) === 'EOPNOTSUPP' || errnoName(last) === 'ENOTSUPP')
      throw new NotSupportedError(`attach ${this.name} to ${ifname}`, `${want} XDP on ${ifname}`, { errno: last, hint: 'try --mode generic' });
    throw kernelError(`attach ${this.name} to ${ifname}`, last);
  }

  /** tc ingress through a TCX link (kernel 6.6+): multi-program, detached when the link goes. */
  attachTcx(ifname: string, direction: 'ingress' | 'egress' = 'ingress'): Link {
    const ifindex = ifindexOf(ifname);
    const lopts = { sz: sizeof(LinkCreateOpts), flags: 0, iter_info: null, iter_info_len: 0, target_btf_id: 0, u: [0n, 0n, 0n, 0n] };
    const fd = libbpf().bpf_link_create(this.fd, ifindex, direction === 'egress' ? ATTACH.TCX_EGRESS : ATTACH.TCX_INGRESS, lopts);
    const where = `tc ${direction} of ${ifname}`;
    if (fd < 0) {
      const name = errnoName(-fd);
      if (name === 'EINVAL' || name === 'EOPNOTSUPP') throw new NotSupportedError(`attach ${this.name} to ${where}`, 'TCX links (Linux 6.6+)', { errno: -fd, hint: direction === 'ingress' ? 'use the xdp hook' : undefined });
      throw kernelError(`attach ${this.name} to ${where}`, -fd);
    }
    return new Link(`tc ${direction} on ${ifname}`, fd);
  }

  /** `category/name` as in tracefs, e.g. syscalls/sys_enter_mkdir. */
  attachTracepoint(category: string, name: string): Link {
    ensureTracefs();
    const mark = libbpfMark();
    const p = libbpf().bpf_program__attach_tracepoint(this.ptr as never, category, name);
    if (!p) {
      const said = libbpfMessagesSince(mark).join(' ');
      if (/No such file|ENOENT|-2\b/.test(said))
        throw new NotSupportedError(`attach ${this.name}`, `tracepoint ${category}/${name}`, { errno: 2 });
    }
    const l = checkPtr(`attach ${this.name} to tracepoint ${category}/${name}`, p, mark);
    return new Link(`tracepoint ${category}/${name}`, libbpf().bpf_link__fd(l as never), l);
  }

  /**
   * Attaches a program whose section names its kernel function (fentry/NAME, fexit/NAME,
   * lsm/HOOK) through a BPF trampoline.
   */
  attachTrampoline(): Link {
    const mark = libbpfMark();
    const p = libbpf().bpf_program__attach(this.ptr as never);
    const l = checkPtr(`attach ${this.name} to ${this.section}`, p, mark);
    return new Link(this.section, libbpf().bpf_link__fd(l as never), l);
  }

  /** Attaches to a cgroup v2 directory (absolute, or relative to the cgroup v2 mount). */
  attachCgroup(path: string): Link {
    const root = ensureCgroup2().path;
    const full = path.startsWith('/') ? path : `${root}/${path}`;
    let cfd: number;
    try {
      cfd = openSync(full, 'r');
    } catch (e) {
      throw new EbpfnetError('EBPFNET_NOT_FOUND', `attach ${this.name} to cgroup ${full}`, 'no such cgroup', {
        hint: `cgroup v2 is mounted at ${root}`,
        cause: e,
      });
    }
    try {
      const mark = libbpfMark();
      const p = libbpf().bpf_program__attach_cgroup(this.ptr as never, cfd);
      const l = checkPtr(`attach ${this.name} to cgroup ${full}`, p, mark);
      return new Link(`${this.section} on ${full}`, libbpf().bpf_link__fd(l as never), l);
    } finally {
      closeSync(cfd);
    }
  }
}
