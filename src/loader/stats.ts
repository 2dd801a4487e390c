// SPDX-License-Identifier: Apache-2.0
// Per-program run statistics: how often a loaded program ran and for how long, as the kernel keeps
// them in struct bpf_prog_info (run_cnt, run_time_ns). The kernel only counts while BPF stats are
// on (they cost two clock reads per run), so whoever wants the numbers turns them on while it runs.
import { readFileSync, writeFileSync } from 'node:fs';
import { EbpfnetError, errnoName } from '../errors.js';
import { libbpf } from '../libbpf/index.js';
import { closeFd } from './fd.js';
import { track, untrack, type Closable } from './guard.js';

export const BPF_STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';
/** enum bpf_stats_type: the only one there is */
const BPF_STATS_RUN_TIME = 0;

/** struct bpf_prog_info, the fields we read (offsets from include/uapi/linux/bpf.h). */
export interface ProgInfo {
  id: number;
  name: string;
  runCount: bigint;
  runTimeNs: bigint;
}

/** The info of a program we hold a descriptor of; null when the kernel refuses it. */
export function progInfoByFd(fd: number): ProgInfo | null {
  const info = Buffer.alloc(232);
  const len = [info.length];
  if (libbpf().bpf_obj_get_info_by_fd(fd, info, len) < 0) return null;
  const end = info.indexOf(0, 64);
  return {
    id: info.readUInt32LE(4),
    name: info.toString('utf8', 64, end < 0 || end > 80 ? 80 : end),
    // older kernels fill fewer bytes (len says how many): their counters read as 0
    runTimeNs: len[0] >= 200 ? info.readBigUInt64LE(192) : 0n,
    runCount: len[0] >= 208 ? info.readBigUInt64LE(200) : 0n,
  };
}

/** The same by program id (what a link reports); null when the program is gone. */
export function progInfo(id: number): ProgInfo | null {
  const fd = libbpf().bpf_prog_get_fd_by_id(id);
  if (fd < 0) return null;
  try {
    return progInfoByFd(fd);
  } finally {
    closeFd(fd);
  }
}

/** Keeps run statistics on until closed, then puts things back as they were. */
export interface RunStats extends Closable {
  /** `bpf_enable_stats` (a descriptor the kernel releases even after kill -9), `sysctl` (written
   * now, restored on close and at exit), or `already on` (the sysctl was 1: nothing to undo) */
  readonly via: 'bpf_enable_stats' | 'sysctl' | 'already on';
}

const readSysctl = (file: string): string => readFileSync(file, 'utf8').trim();

/**
 * Turns BPF run statistics on. The BPF_ENABLE_STATS command is preferred: its descriptor keeps
 * them on while held and the kernel turns them off when the last one closes, however the process
 * ends. Kernels before 5.8 lack it; then kernel.bpf_stats_enabled is set to 1 and the previous
 * value written back on close() or at process exit (kill -9 is the one path that cannot restore it).
 */
export function enableRunStats(opts: { via?: 'bpf_enable_stats' | 'sysctl'; sysctl?: string } = {}): RunStats {
  const sysctl = opts.sysctl ?? BPF_STATS_SYSCTL;
  let reason = '';
  if (opts.via !== 'sysctl') {
    const fd = libbpf().bpf_enable_stats(BPF_STATS_RUN_TIME);
    if (fd >= 0) {
      const r: RunStats = {
        via: 'bpf_enable_stats',
        close() {
          closeFd(fd);
          untrack(r);
          r.close = () => {};
        },
      };
      return track(r);
    }
    reason = `BPF_ENABLE_STATS failed (${errnoName(-fd)})`;
  }
  let before: string;
  try {
    before = readSysctl(sysctl);
  } catch (e) {
    throw new EbpfnetError('EBPFNET_NOT_SUPPORTED', 'turn on bpf run statistics', `${reason ? `${reason}; ` : ''}cannot read ${sysctl}`, { hint: 'the kernel needs CONFIG_BPF_SYSCALL and Linux 5.1+', cause: e });
  }
  if (before === '1') return { via: 'already on', close() {} };
  try {
    writeFileSync(sysctl, '1\n');
  } catch (e) {
    throw new EbpfnetError('EBPFNET_PERMISSION', 'turn on bpf run statistics', `${reason ? `${reason}; ` : ''}cannot write ${sysctl}: ${(e as Error).message}`, { hint: 'run as root (needs CAP_SYS_ADMIN)', cause: e });
  }
  const r: RunStats = {
    via: 'sysctl',
    close() {
      untrack(r);
      r.close = () => {};
      writeFileSync(sysctl, `${before}\n`);
    },
  };
  return track(r);
}
