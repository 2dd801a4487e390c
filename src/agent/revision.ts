// SPDX-License-Identifier: Apache-2.0
// Revisions: every part of the desired state (filter, balancer) counts its changes, shows the count
// as its ETag, and refuses a change based on an older one (`If-Match`), so two clients editing the
// same thing cannot silently undo each other.
import { EbpfnetError } from '../errors.js';

/** `"7"`, `W/"7"`, `"6", "7"`, `*`: does any of them name revision `rev`? */
export function revisionMatches(ifMatch: string, rev: number): boolean {
  return ifMatch.split(',').some((t) => {
    const v = t.trim().replace(/^W\//, '');
    return v === '*' || v === `"${rev}"` || v === String(rev);
  });
}

export const etag = (rev: number): string => `"${rev}"`;

/** Throws EBPFNET_STALE (412) when `ifMatch` is given and is not revision `rev`. */
export function checkIfMatch(ifMatch: string | undefined, rev: number, op: string, hint: string): void {
  if (ifMatch !== undefined && !revisionMatches(ifMatch, rev)) {
    throw new EbpfnetError('EBPFNET_STALE', op, `If-Match ${ifMatch} is not the current revision "${rev}"`, { hint });
  }
}
