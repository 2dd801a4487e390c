// SPDX-License-Identifier: Apache-2.0
// tr_event records as the kernel fills them, for the tracer's unit tests: defaults for a plain
// successful mkdir, any field overridden, comm and path given as text.
import * as G from '../../src/gen/trace.js';

export type RecordOverrides = Partial<G.TrEvent> & { commText?: string | Buffer; pathText?: string | Buffer };

/** A NUL-padded fixed-size field, cut to its size as the kernel cuts it. */
export function fixedBytes(s: string | Buffer, size: number): Uint8Array {
  const out = new Uint8Array(size);
  out.set((typeof s === 'string' ? Buffer.from(s) : s).subarray(0, size));
  return out;
}

export function traceRecord(over: RecordOverrides = {}, ts = 1_000_000_000n): G.TrEvent {
  const { commText = 'mkdir', pathText = '/tmp/x', ...rest } = over;
  return {
    ts_ns: ts,
    latency_ns: 12_345n,
    pid: 4242,
    tid: 4243,
    uid: 1000,
    ret: 0,
    mode: 0o755,
    dirfd: G.TR_AT_FDCWD,
    syscall: G.TR_SYS_MKDIR,
    flags: 0,
    ns_pid: 4242,
    cgroup_id: 1n,
    via: G.TR_VIA_SYSCALL,
    comm: fixedBytes(commText, G.TR_COMM_LEN),
    path: fixedBytes(pathText, G.TR_PATH_MAX),
    ...rest,
  };
}
