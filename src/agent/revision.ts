// SPDX-License-Identifier: Apache-2.0
// Revisions: every part of the desired state (filter, balancer) counts its changes, shows the count
// as its ETag, and refuses a change based on an older one (`If-Match`), so two clients editing the
// same thing cannot silently undo each other.
import { EbpfnetError } from '../errors.js';

export const etag = (rev: number): string => `"${rev}"`;

/** Who asked, and the revision their change was based on (`If-Match`), if they said. */
export interface Caller {
  who: string;
  ifMatch?: string;
}

/** One entity tag of an If-Match list: `"7"` (strong) or `W/"7"` (weak). */
export interface EntityTag {
  weak: boolean;
  /** the opaque tag with its quotes: `"7"` */
  tag: string;
}

const malformed = (value: string, detail: string): EbpfnetError =>
  new EbpfnetError('EBPFNET_USAGE', 'read If-Match', `'${value.slice(0, 80)}' ${detail}`, { hint: 'send the ETag a GET answered (If-Match: "7"), a comma-separated list of them, or *' });

/**
 * An If-Match field value by RFC 9110 (section 13.1.1): `*` alone, or a list of entity tags
 * (`"7"`, `W/"7"`; a tag may hold commas, so the list is scanned, not split). Empty list elements
 * are skipped (section 5.6.1). Anything else is EBPFNET_USAGE (400): a malformed precondition is
 * never read as some other one.
 */
export function parseIfMatch(value: string): '*' | EntityTag[] {
  if (value.trim() === '*') return '*';
  const tags: EntityTag[] = [];
  let i = 0;
  const ows = (): void => {
    while (value[i] === ' ' || value[i] === '\t') i++;
  };
  for (;;) {
    ows();
    if (i === value.length) break;
    if (value[i] === ',') {
      i++;
      continue;
    }
    if (value[i] === '*') throw malformed(value, 'names * inside a list; * stands alone');
    const weak = value.startsWith('W/', i);
    if (weak) i += 2;
    if (value[i] !== '"') throw malformed(value, `is not a list of entity tags (at ${JSON.stringify(value.slice(i, i + 16))}: a tag is a quoted string, "7" or W/"7")`);
    const end = value.indexOf('"', i + 1);
    if (end < 0) throw malformed(value, 'has an entity tag without its closing quote');
    const tag = value.slice(i, end + 1);
    // etagc: %x21 / %x23-7E / obs-text (node hands header bytes over as latin1)
    if (!/^"[\x21\x23-\x7e\x80-\xff]*"$/.test(tag)) throw malformed(value, 'has an entity tag with a space or a control character');
    tags.push({ weak, tag });
    i = end + 1;
    ows();
    if (i < value.length && value[i] !== ',') throw malformed(value, `has ${JSON.stringify(value.slice(i, i + 16))} after an entity tag; tags are separated by commas`);
  }
  if (!tags.length) throw malformed(value, 'names no entity tag');
  return tags;
}

/**
 * Throws EBPFNET_USAGE (400) when `ifMatch` is malformed, EBPFNET_STALE (412) when it is given and
 * names no strong tag of revision `rev`. If-Match compares strongly (RFC 9110 section 13.1.1): a
 * weak tag never matches, and our ETags are strong.
 */
export function checkIfMatch(ifMatch: string | undefined, rev: number, op: string, hint: string): void {
  if (ifMatch === undefined) return;
  const tags = parseIfMatch(ifMatch);
  if (tags === '*') return;
  const current = etag(rev);
  if (tags.some((t) => !t.weak && t.tag === current)) return;
  const weakOnly = tags.some((t) => t.weak && t.tag === current);
  throw new EbpfnetError('EBPFNET_STALE', op, `If-Match ${ifMatch.slice(0, 80)} is not the current revision ${current}${weakOnly ? ` (W/${current} is a weak tag, and If-Match never matches a weak tag: send ${current})` : ''}`, { hint });
}
