// SPDX-License-Identifier: Apache-2.0
// -o json|text and --json: the one option helper, and every command that prints state using it.
import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EbpfnetError } from '../../src/errors.js';
import { outputFormat, parseOutputFormat, printsState, withOutputOption } from '../../src/cli/output.js';
import { handleError } from '../../src/cli/present.js';
import { buildProgram } from '../../src/cli/program.js';

/**
 * Commands that print no state of their own, each with the reason. Every other command must take
 * -o json: a new command fails this test until it does, or until it is listed here with a reason.
 */
const NO_STATE: Record<string, string> = {
  agent: 'a daemon: its stdout is a log; its state is the HTTP API (status --agent -o json, lb list --agent -o json)',
  filter: 'runs in the foreground until stopped; a pinned filter is read with status -o json',
  'filter set': 'an action: status -o json shows the result',
  unload: 'an action',
  'lb attach': 'an action: lb list -o json shows the result',
  'lb add': 'an action: lb list -o json shows the result',
  'lb del': 'an action',
  'lb apply': 'an action: lb list -o json shows the result',
  'lb detach': 'an action',
  'lb metrics': 'prints the Prometheus text format, itself machine-readable',
  'lab up': 'an action: lab status -o json shows the result',
  'lab down': 'an action',
  'lab exec': "runs a command; its output is the command's",
};

/** commander keeps a command's action privately; a group of subcommands has none (`filter` has both) */
const hasAction = (c: Command): boolean => (c as unknown as { _actionHandler: unknown })._actionHandler != null;

/** Every command that does something itself (not only a group of subcommands), by its path. */
function leaves(c: Command, path: string[] = []): Array<{ path: string[]; cmd: Command }> {
  return c.commands.flatMap((s) => {
    const p = [...path, s.name()];
    return [...(hasAction(s) ? [{ path: p, cmd: s }] : []), ...leaves(s, p)];
  });
}

/** Parses `PATH ARGS... OPTIONS` with every action replaced by one that keeps the options it got. */
async function parsedOptions(path: string[], options: string[]): Promise<Record<string, unknown>> {
  const program = buildProgram();
  let got: Record<string, unknown> | null = null;
  const all = leaves(program);
  for (const { cmd } of all) cmd.action(() => void (got = cmd.opts()));
  const { cmd } = all.find((l) => l.path.join(' ') === path.join(' '))!;
  const args = cmd.registeredArguments.filter((a) => a.required).map(() => 'x');
  await program.parseAsync([...path, ...args, ...options], { from: 'user' });
  if (!got) throw new Error(`no action ran for ${path.join(' ')}`);
  return got;
}

describe('-o json|text', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = 0;
  });

  it('parses json and text, in any case, and a command\'s synonyms', () => {
    expect(parseOutputFormat('json')).toBe('json');
    expect(parseOutputFormat(' Text ')).toBe('text');
    expect(parseOutputFormat('table', { table: 'text' })).toBe('text');
    expect(() => parseOutputFormat('table')).toThrow(EbpfnetError);
  });

  it('an unknown format is one usage line naming the formats', () => {
    let err: unknown;
    try {
      parseOutputFormat('yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EbpfnetError);
    expect((err as EbpfnetError).code).toBe('EBPFNET_USAGE');
    expect((err as EbpfnetError).message).toBe("parse --output: 'yaml' is not an output format (json, text); use -o json or -o text");
  });

  it('resolves the format: text by default, --json is -o json, and the two cannot disagree', () => {
    expect(outputFormat({})).toBe('text');
    expect(outputFormat({ json: true })).toBe('json');
    expect(outputFormat({ output: 'json' })).toBe('json');
    expect(outputFormat({ output: 'json', json: true })).toBe('json');
    expect(() => outputFormat({ output: 'text', json: true })).toThrow(/--json and -o text ask for two formats/);
  });

  it('through commander: -o yaml is exit 2 and one line on stderr, before the action runs', async () => {
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => (lines.push(String(s)), true));
    let ran = false;
    const c = withOutputOption(new Command('x').exitOverride()).action(() => void (ran = true));
    await c.parseAsync(['-o', 'yaml'], { from: 'user' }).catch(handleError);
    expect(ran).toBe(false);
    expect(process.exitCode).toBe(2);
    expect(lines).toEqual(["ebpfnet: parse --output: 'yaml' is not an output format (json, text); use -o json or -o text\n"]);
  });

  it('every command that prints state accepts -o json, -o text and --json (a new command cannot forget it)', async () => {
    const all = leaves(buildProgram());
    const names = all.map((l) => l.path.join(' '));
    // the exemptions name real commands, and none of them has the option after all
    for (const n of Object.keys(NO_STATE)) expect(names, n).toContain(n);
    const stateful = all.filter((l) => !(l.path.join(' ') in NO_STATE));
    expect(stateful.map((l) => l.path.join(' ')).sort()).toEqual(['doctor', 'filter conntrack', 'filter explain', 'kubernetes manifests', 'kubernetes status', 'lab demo', 'lab status', 'lb explain', 'lb list', 'status', 'trace', 'verify']);
    for (const { path, cmd } of all) {
      const n = path.join(' ');
      expect(printsState(cmd), `${n}: ${NO_STATE[n] ? 'exempt, yet has -o' : 'prints state: give it withOutputOption()'}`).toBe(!(n in NO_STATE));
    }
    for (const { path } of stateful) {
      expect(outputFormat(await parsedOptions(path, ['-o', 'json'])), `${path.join(' ')} -o json`).toBe('json');
      expect(outputFormat(await parsedOptions(path, ['--json'])), `${path.join(' ')} --json`).toBe('json');
      expect(outputFormat(await parsedOptions(path, ['--output', 'text'])), `${path.join(' ')} --output text`).toBe('text');
    }
  });

  it('trace keeps -o table as text', async () => {
    expect(outputFormat(await parsedOptions(['trace'], ['-o', 'table']))).toBe('text');
  });
});
