// SPDX-License-Identifier: Apache-2.0
// The words of `ebpfnet filter explain`: what decided a packet, and when a stateful filter's
// connection table holds the packet's flow, what state made of it and what the rules alone would
// say. Pure: the verdicts come from the kernel program and the reference model (cli/filter.ts).
import { flowText, type FlowView } from './conntrack.js';

export type Verdict = 'PASS' | 'DROP';

/** What a pinned filter's connection table said about a packet whose flow it tracks. */
export interface StateFinding {
  /** the live tracked flow the packet was looked up as (in the host's view) */
  flow: FlowView;
  /** passed by state, or null: state did not pass it (see why) */
  as: 'established' | 'related' | null;
  /** why not: an explicit deny rule decides before state, or the packet does not count as the flow
   * (an opening SYN, a bare ACK before the far side answered, a UDP packet on an echo's key...) */
  why: 'deny-rule' | 'not-part' | null;
}

export interface Explained {
  packet: string;
  /** the rules' verdict and what decided it (the whole answer when state did not pass the packet) */
  rules: { verdict: Verdict; by: string };
  audit: boolean;
  state: StateFinding | null;
}

/** The final verdict and who decided it. */
export function decided(e: Explained): { verdict: Verdict; by: string } {
  return e.state?.as ? { verdict: 'PASS', by: `connection state (${e.state.as})` } : e.rules;
}

/** The answer's lines (the CLI adds the model's agreement after them). */
export function explainLines(e: Explained): string[] {
  const audit = e.audit ? ' (audit mode passes everything)' : '';
  const s = e.state;
  if (s?.as) {
    const what = s.as === 'related' ? `an ICMP error about the tracked flow ${flowText(s.flow)}` : `the tracked flow ${flowText(s.flow)}`;
    return [`${e.packet}: PASS as ${s.as} (${what})`, `without that flow: ${e.rules.verdict} by ${e.rules.by}${audit}`];
  }
  const head = `${e.packet}: ${e.rules.verdict} by ${e.rules.by}${audit}`;
  if (!s) return [head];
  if (s.why === 'deny-rule') return [head, `a deny rule decides before connection state: the tracked flow ${flowText(s.flow)} does not let it through`];
  const tcp = s.flow.proto === 'tcp' ? ' (a SYN opens a new connection, and explain sends a SYN unless told "flags ack"; until the far side answers, only its SYN-ACK or RST counts)' : '';
  return [head, `the flow ${flowText(s.flow)} is tracked, but this packet does not count as part of it${tcp}`];
}
