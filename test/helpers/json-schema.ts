// SPDX-License-Identifier: Apache-2.0
// A small JSON Schema checker for the schemas ebpfnet ships (src/trace/event.schema.json): the
// keywords they use and nothing more. An unknown keyword is an error rather than ignored, so a
// schema cannot quietly rely on something this checker does not enforce. No dependency needed.
type Schema = Record<string, unknown>;

const ANNOTATIONS = new Set(['$schema', '$id', 'title', 'description']);
const KNOWN = new Set([...ANNOTATIONS, 'type', 'required', 'additionalProperties', 'properties', 'const', 'enum', 'pattern', 'minimum', 'maximum', 'maxLength', 'minLength']);

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

const typeMatches = (want: string, got: string): boolean => want === got || (want === 'number' && got === 'integer');

/** Every way `value` breaks `schema`, as `path: problem` strings; empty when it conforms. */
export function validate(schema: Schema, value: unknown, path = '$'): string[] {
  const errors: string[] = [];
  for (const k of Object.keys(schema)) if (!KNOWN.has(k)) throw new Error(`json-schema: unsupported keyword '${k}' at ${path}`);
  const got = typeOf(value);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some((t) => typeMatches(t, got))) return [`${path}: is ${got}, wants ${types.join(' or ')}`];
  }
  if ('const' in schema && value !== schema.const) errors.push(`${path}: is ${JSON.stringify(value)}, wants ${JSON.stringify(schema.const)}`);
  if (schema.enum && !(schema.enum as unknown[]).includes(value)) errors.push(`${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if (typeof value === 'string') {
    const len = [...value].length;
    if (schema.pattern !== undefined && !new RegExp(schema.pattern as string, 'u').test(value)) errors.push(`${path}: ${JSON.stringify(value)} does not match ${schema.pattern}`);
    if (schema.maxLength !== undefined && len > (schema.maxLength as number)) errors.push(`${path}: longer than ${schema.maxLength}`);
    if (schema.minLength !== undefined && len < (schema.minLength as number)) errors.push(`${path}: shorter than ${schema.minLength}`);
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < (schema.minimum as number)) errors.push(`${path}: ${value} < ${schema.minimum}`);
    if (schema.maximum !== undefined && value > (schema.maximum as number)) errors.push(`${path}: ${value} > ${schema.maximum}`);
  }
  if (got === 'object') {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const r of (schema.required ?? []) as string[]) if (!(r in obj)) errors.push(`${path}: missing ${r}`);
    for (const [k, v] of Object.entries(obj)) {
      if (props[k]) errors.push(...validate(props[k], v, `${path}.${k}`));
      else if (schema.additionalProperties === false) errors.push(`${path}: unexpected key ${k}`);
    }
  }
  return errors;
}
