// SPDX-License-Identifier: Apache-2.0
// JSON schemas every route module shares (the error answer, an id in the path); each datapath's
// own bodies and answers sit with its routes (filter-routes.ts, lb-routes.ts, trace-routes.ts).

export const errorSchema = {
  type: 'object',
  required: ['code', 'message'],
  properties: {
    code: { type: 'string', description: 'an EBPFNET_* code (see the README error table)' },
    message: { type: 'string', description: '`operation: what is wrong; how to fix it`' },
  },
} as const;

export const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^[0-9]{1,9}$' } },
} as const;
