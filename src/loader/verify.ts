// SPDX-License-Identifier: Apache-2.0
// The verifier harness: every program of every object loaded alone into the kernel, with the
// verifier's statistics, compared with a committed baseline for this kernel version so a program
// that stops loading, or whose verification cost grows by more than 20%, fails CI.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isEbpfnetError, VerifierError, verifierTail } from '../errors.js';
import { kernelVersion } from './features.js';
import { ObjectSpec } from './object.js';
import { isRoot } from './system.js';

export interface VerifyRow {
  object: string;
  program: string;
  type: string;
  /** refused: the kernel will not load this program type at all here (EPERM as root: a policy on bpf(), not the program) */
  verdict: 'ok' | 'rejected' | 'error' | 'refused';
  insns: number | null;
  states: number | null;
  stackDepth: number | null;
  /** end of the verifier log for a rejection, or the error message */
  detail?: string;
}

export interface BaselineEntry {
  insns: number;
}

/** `<object>/<program>` -> what the verifier processed on this kernel version when it was committed */
export type Baseline = Record<string, BaselineEntry>;

export const GROWTH_LIMIT = 0.2;

export function verifyObject(path: string): VerifyRow[] {
  const object = path.split('/').pop()!.replace(/\.bpf\.o$/, '');
  const probe = ObjectSpec.open(path);
  const programs = probe.programs();
  probe.close();
  return programs.map((p) => {
    const row: VerifyRow = { object, program: p.name, type: p.typeName, verdict: 'ok', insns: null, states: null, stackDepth: null };
    try {
      const obj = ObjectSpec.open(path).load({ only: [p.name] });
      const s = obj.verifierStats.get(p.name) ?? null;
      obj.close();
      row.insns = s?.insns ?? null;
      row.states = s?.states ?? null;
      row.stackDepth = s?.stackDepth ?? null;
    } catch (e) {
      if (e instanceof VerifierError) {
        row.verdict = 'rejected';
        row.insns = e.stats?.insns ?? null;
        row.detail = verifierTail(e.log, 12);
      } else {
        const msg = isEbpfnetError(e) ? e.message : String(e);
        // LSM and trampoline programs can be refused wholesale where tracepoints load; the tracer
        // runs without them and says so, so this is no regression of the program
        row.verdict = (p.typeName === 'lsm' || p.typeName === 'tracing') && /\bEPERM\b/.test(msg) && isRoot() ? 'refused' : 'error';
        row.detail = row.verdict === 'refused' ? `this kernel refuses ${p.typeName} programs even as root (EPERM before the verifier: a lockdown or security-module policy on bpf())` : msg;
      }
    }
    return row;
  });
}

export function verifyDir(dir: string): VerifyRow[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.bpf.o'))
    .sort()
    .flatMap((f) => verifyObject(join(dir, f)));
}

export const baselineKey = (rel?: string): string => kernelVersion(rel).join('.');

export function readBaseline(dir: string, key = baselineKey()): Baseline | null {
  const p = join(dir, `${key}.json`);
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as Baseline) : null;
}

export function makeBaseline(rows: VerifyRow[]): Baseline {
  const out: Baseline = {};
  for (const r of rows) if (r.verdict === 'ok' && r.insns !== null) out[`${r.object}/${r.program}`] = { insns: r.insns };
  return out;
}

export interface Regression {
  program: string;
  problem: string;
}

/** What got worse against the baseline: rejections, errors, and growth past GROWTH_LIMIT. */
export function compareWithBaseline(rows: VerifyRow[], baseline: Baseline | null): Regression[] {
  const out: Regression[] = [];
  for (const r of rows) {
    const key = `${r.object}/${r.program}`;
    if (r.verdict === 'refused') continue;
    if (r.verdict !== 'ok') {
      out.push({ program: key, problem: r.verdict === 'rejected' ? 'the verifier rejects it' : `it does not load: ${r.detail}` });
      continue;
    }
    const b = baseline?.[key];
    if (b && r.insns !== null && r.insns > b.insns * (1 + GROWTH_LIMIT)) {
      out.push({ program: key, problem: `processed instructions grew from ${b.insns} to ${r.insns} (+${Math.round((r.insns / b.insns - 1) * 100)}%, limit ${GROWTH_LIMIT * 100}%)` });
    }
  }
  return out;
}
