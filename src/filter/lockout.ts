// SPDX-License-Identifier: Apache-2.0
// Lock-out protection: would this policy drop the SSH session the command was typed in? Uses the
// reference model on the session's own packet (client -> server), for each filtered interface that
// holds the server address. Pure apart from reading the environment and interface addresses.
import { networkInterfaces } from 'node:os';
import { evaluate, type Policy } from './policy.js';
import { formatRule, parseCidr } from './rules.js';

export interface Lockout {
  ifname: string;
  packet: string;
  rule: string;
}

export function sshLockout(policy: Policy, ifnames: string[], env: NodeJS.ProcessEnv = process.env, ifaces = networkInterfaces()): Lockout | null {
  const parts = (env.SSH_CONNECTION ?? '').trim().split(/\s+/);
  if (parts.length !== 4 || policy.audit) return null;
  const [client, cport, server, sport] = parts;
  let c;
  let s;
  try {
    c = parseCidr(client);
    s = parseCidr(server);
  } catch {
    return null;
  }
  for (const ifname of ifnames) {
    const holds = (ifaces[ifname] ?? []).some((a) => {
      try {
        const x = parseCidr(a.address.split('%')[0]);
        return x.family === s.family && x.addr === s.addr;
      } catch {
        return false;
      }
    });
    if (!holds) continue;
    const d = evaluate(policy, { kind: 'ip', family: s.family, proto: 6, dport: Number(sport), src: c.addr, dst: s.addr });
    if (d.action === 'deny') {
      return { ifname, packet: `tcp ${client}:${cport} -> ${server}:${sport}`, rule: d.rule === null ? `default ${policy.default}` : formatRule(policy.rules[d.rule]) };
    }
  }
  return null;
}
