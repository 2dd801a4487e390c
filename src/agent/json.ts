// SPDX-License-Identifier: Apache-2.0
// Strict JSON for request bodies and JSON config files. RFC 8259 leaves duplicate names in one object undefined and
// parsers disagree on which one wins (JSON.parse takes the last, others the first), so a body that
// a proxy or an auditor reads one way could be applied another way. The API refuses such bodies.

/**
 * The first name that appears twice in one object of `text`, or null. `text` must already be
 * valid JSON (the scan trusts its structure); escaped names compare by what they decode to.
 */
export function duplicateKey(text: string): string | null {
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
        const seen = stack[stack.length - 1]!;
        if (seen.has(name)) return name;
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
