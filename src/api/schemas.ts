// SPDX-License-Identifier: Apache-2.0
// JSON schemas of the API's bodies and answers. They check shape only; the rule text itself goes
// through the one rule grammar (src/filter/rules.ts), the same as the CLI's --deny and --allow.
import { PROTOS } from '../filter/rules.js';
import { STAT_JSON_KEYS, type StatJsonKey } from '../filter/stats.js';

export const errorSchema = {
  type: 'object',
  required: ['code', 'message'],
  properties: {
    code: { type: 'string', description: 'an EBPFNET_* code (see the README error table)' },
    message: { type: 'string', description: '`operation: what is wrong; how to fix it`' },
  },
} as const;

export const ruleBody = {
  type: 'object',
  additionalProperties: false,
  required: ['action', 'match'],
  properties: {
    action: { type: 'string', enum: ['allow', 'deny'] },
    match: { type: 'string', minLength: 1, maxLength: 256, description: `[PROTO[/PORTS]] [from CIDR] [to CIDR]; PROTO is one of ${PROTOS.join(', ')}` },
  },
} as const;

export const ruleView = {
  type: 'object',
  required: ['id', 'action', 'match'],
  properties: { id: { type: 'integer' }, action: { type: 'string', enum: ['allow', 'deny'] }, match: { type: 'string' } },
} as const;

/** an interface name, a shell-style glob or `all` (checked in full by the filter's checkPattern) */
const ifacePattern = { type: 'string', pattern: '^[A-Za-z0-9_.@:*?\\[\\]!^-]{1,64}$' } as const;

/** PUT /v1/filter, for a filter of `maxRules` rules (Agent.maxRules): the schema says the real limit. */
export const filterBody = (maxRules: number) =>
  ({
    type: 'object',
    additionalProperties: false,
    required: ['rules'],
    properties: {
      interfaces: { type: 'array', maxItems: 64, items: ifacePattern, description: "the interfaces the policy runs on: names, globs ('veth*') or 'all' (globs and all also cover interfaces that appear later); omitted: unchanged" },
      rules: { type: 'array', maxItems: maxRules, items: ruleBody, description: `at most ${maxRules}: filter.maxRules of the agent's config (413 beyond)` },
      default: { type: 'string', enum: ['allow', 'deny'], description: 'omitted: unchanged' },
      audit: { type: 'boolean', description: 'count what would be dropped, drop nothing; omitted: unchanged' },
    },
  }) as const;

export const filterView = {
  type: 'object',
  required: ['revision', 'interfaces', 'rules', 'default', 'audit', 'hook', 'mode'],
  properties: {
    revision: { type: 'integer', description: 'also the ETag; send it back in If-Match' },
    interfaces: { type: 'array', items: { type: 'string' } },
    rules: { type: 'array', items: ruleView },
    default: { type: 'string', enum: ['allow', 'deny'] },
    audit: { type: 'boolean' },
    hook: { type: 'string', enum: ['xdp', 'tc'] },
    mode: { type: 'string', enum: ['native', 'generic', 'auto'] },
  },
} as const;

const count = { type: 'object', properties: { packets: { type: 'integer' }, bytes: { type: 'integer' } } } as const;

export const filterStats = {
  type: 'object',
  properties: {
    revision: { type: 'integer' },
    interfaces: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          interface: { type: 'string' },
          attachment: { type: 'string' },
          rules: {
            type: 'array',
            items: { type: 'object', properties: { id: { type: ['integer', 'null'] }, action: { type: 'string' }, match: { type: 'string' }, packets: { type: 'integer' }, bytes: { type: 'integer' } } },
          },
          default: { type: 'object', properties: { pass: count, drop: count } },
          ...(Object.fromEntries(STAT_JSON_KEYS.map((k) => [k, count])) as Record<StatJsonKey, typeof count>),
        },
      },
    },
  },
} as const;

export const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^[0-9]{1,9}$' } },
} as const;
