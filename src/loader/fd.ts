// SPDX-License-Identifier: Apache-2.0
// Small helpers shared by the loader's classes: checking libbpf returns, closing descriptors.
import { EbpfnetError, kernelError } from '../errors.js';
import { libbpf, errno, isNull, libbpfMark, libbpfMessagesSince } from '../libbpf/index.js';

/** libbpf int returns are 0/positive or -errno. */
export function check(op: string, rc: number): number {
  if (rc < 0) throw kernelError(op, -rc);
  return rc;
}

/** libbpf pointer returns are NULL with errno set. */
export function checkPtr<T>(op: string, p: T, mark?: number): NonNullable<T> {
  if (isNull(p)) {
    const e = errno();
    const err = kernelError(op, e || 22);
    const said = mark === undefined ? [] : libbpfMessagesSince(mark);
    if (said.length) (err as { libbpf?: string[] }).libbpf = said;
    throw err;
  }
  return p as NonNullable<T>;
}

export function closeFd(fd: number): void {
  if (fd >= 0) libbpf().close(fd);
}

export { libbpfMark };

export function closed(what: string): never {
  throw new EbpfnetError('EBPFNET_USAGE', what, 'it was already closed');
}
