// SPDX-License-Identifier: Apache-2.0
// Strict JSON for request bodies: the check lives with the agent, which reads JSON config files
// with it too (src/agent/json.ts).
export { duplicateKey } from '../agent/json.js';

/** The JSON text of `v` in pieces: containers holding containers are opened, the rest stringified. */
function* pieces(v: unknown): Generator<string> {
  if (Array.isArray(v)) {
    yield '[';
    for (let i = 0; i < v.length; i++) {
      if (i) yield ',';
      yield* pieces(v[i]);
    }
    yield ']';
  } else if (v !== null && typeof v === 'object' && Object.values(v).some((x) => x !== null && typeof x === 'object')) {
    let first = true;
    yield '{';
    for (const [k, x] of Object.entries(v)) {
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
 * stream: the text of a 100,000-rule policy is made a chunk at a time while the socket drains,
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
