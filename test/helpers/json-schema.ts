// SPDX-License-Identifier: Apache-2.0
// Checks values against the JSON Schemas ebpfnet ships (src/trace/event.schema.json, draft 2020-12)
// with ajv, the validator fastify already brings. Strict mode: a keyword ajv does not know is an
// error when the schema is compiled, so a schema cannot rely on something nothing enforces.
import { Ajv2020 } from 'ajv/dist/2020.js';

type Schema = Record<string, unknown>;

const ajv = new Ajv2020({ allErrors: true, strict: true });
const compiled = new WeakMap<Schema, ReturnType<typeof ajv.compile>>();

/** Every way `value` breaks `schema`, as `$path: problem` strings; empty when it conforms. */
export function validate(schema: Schema, value: unknown): string[] {
  let check = compiled.get(schema);
  if (!check) {
    // one ajv instance refuses a second schema with the same $id: a re-read copy reuses the first
    const id = typeof schema.$id === 'string' ? schema.$id : undefined;
    check = (id && ajv.getSchema(id)) || ajv.compile(schema);
    compiled.set(schema, check);
  }
  if (check(value)) return [];
  return (check.errors ?? []).map((e) => {
    const at = `$${e.instancePath.replaceAll('/', '.')}`;
    const extra = e.keyword === 'additionalProperties' ? ` ${(e.params as { additionalProperty: string }).additionalProperty}` : '';
    return `${at}: ${e.message ?? e.keyword}${extra}`;
  });
}
