// SPDX-License-Identifier: Apache-2.0
// Strict JSON for request bodies and JSON config files. RFC 8259 leaves duplicate names in one object undefined and
// parsers disagree on which one wins (JSON.parse takes the last, others the first), so a body that
// a proxy or an auditor reads one way could be applied another way. The API refuses such bodies.

/**
 * The first name that appears twice in one object of `text`, or null. `text` must already be
 * valid JSON (the scan trusts its structure); escaped names compare by what they decode to.
 */
export function duplicateKey(text: string): string | null {
  const bad = badName(text);
  return bad && bad.name;
}

/**
 * The first name of `text` that appears twice in one object, or is one of `refused` anywhere
 * (the API refuses `__proto__` and `constructor`), or null. Same scan and terms as duplicateKey.
 */
export function badName(text: string, refused?: ReadonlySet<string>): { name: string; why: 'twice' | 'refused' } | null {
  // one entry per open container: the names seen so far in an object, null for an array
  const stack: Array<Set<string> | null> = [];
  let expectName = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let j = i + 1;
      let escaped = false;
      for (; text.charCodeAt(j) !== 0x22; j++) {
        if (text.charCodeAt(j) === 0x5c) {
          escaped = true;
          j++;
        }
      }
      if (expectName) {
        const name = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        if (refused?.has(name)) return { name, why: 'refused' };
        const seen = stack[stack.length - 1]!;
        if (seen.has(name)) return { name, why: 'twice' };
        seen.add(name);
        expectName = false;
      }
      i = j;
    } else if (c === 0x7b) {
      stack.push(new Set());
      expectName = true;
    } else if (c === 0x5b) {
      stack.push(null);
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
    } else if (c === 0x2c) {
      expectName = stack[stack.length - 1] instanceof Set;
    }
  }
  return null;
}

/** Whether JSON.stringify makes `v` in one small piece: no array, no object holding a container. */
function flat(v: unknown): boolean {
  if (v === null || typeof v !== 'object' || typeof (v as { toJSON?: unknown }).toJSON === 'function') return true;
  if (Array.isArray(v)) return false;
  // a loop, not Object.values(v).some(): no array per object of a 100,000-item list
  for (const k in v) {
    const x = (v as Record<string, unknown>)[k];
    if (x !== null && typeof x === 'object') return false;
  }
  return true;
}

/** The JSON text of `v` in pieces: containers holding containers are opened, the rest stringified. */
function* pieces(v: unknown): Generator<string> {
  if (Array.isArray(v)) {
    yield '[';
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      // flat items inline: a generator per item was most of a large response's garbage
      if (flat(x)) yield `${i ? ',' : ''}${JSON.stringify(x) ?? 'null'}`;
      else {
        if (i) yield ',';
        yield* pieces(x);
      }
    }
    yield ']';
  } else if (!flat(v)) {
    let first = true;
    yield '{';
    for (const [k, x] of Object.entries(v as object)) {
      if (x === undefined) continue;
      yield `${first ? '' : ','}${JSON.stringify(k)}:`;
      first = false;
      yield* pieces(x);
    }
    yield '}';
  } else {
    yield JSON.stringify(v) ?? 'null';
  }
}

/**
 * JSON.stringify(v) as a sequence of strings of about `size` characters each, for a response
 * stream or a hash: the text of a 100,000-rule policy is made a chunk at a time while the socket drains,
 * instead of as one string (fast-json-stringify builds it by concatenation, several times its
 * size in transient memory).
 */
export function* jsonChunks(v: unknown, size = 1 << 16): Generator<string> {
  let buf: string[] = [];
  let n = 0;
  for (const p of pieces(v)) {
    buf.push(p);
    n += p.length;
    if (n >= size) {
      yield buf.join('');
      buf = [];
      n = 0;
    }
  }
  if (buf.length) yield buf.join('');
}
