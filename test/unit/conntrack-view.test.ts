// SPDX-License-Identifier: Apache-2.0
// `filter conntrack`'s view of flt_ct entries: addresses in the host's view, state names, who
// opened the flow, time to expiry from the configured (or default) timeouts; expired flows left out.
import { describe, expect, it } from 'vitest';
import { flowViews, pageFlows, type FlowView } from '../../src/filter/conntrack.js';
import * as F from '../../src/gen/filter.js';

const v4 = (...b: number[]): Uint8Array => Uint8Array.from([...b, ...new Array(12).fill(0)]);
const cfg = (over: Partial<F.FltCtCfg> = {}): F.FltCtCfg => ({ stateful: 1, now: 0n, tcp_syn_sent: 0, tcp_established: 0, tcp_closing: 0, tcp_time_wait: 0, udp_single: 0, udp_stream: 0, icmp: 0, ...over });
const S = 1_000_000_000n;

describe('conntrack view', () => {
  it('names, endpoints, opener and expiry; newest first; an expired flow is not listed', () => {
    const now = 1000n * S;
    const rows = flowViews(
      [
        [{ laddr: v4(10, 0, 0, 2), raddr: v4(10, 0, 0, 1), lport: 40000, rport: 443, proto: 6, family: F.FLT_FAMILY_V4 }, { last_seen: now - 10n * S, state: F.FLT_CT_ESTABLISHED, flags: F.FLT_CT_F_REPLIED }],
        [{ laddr: v4(10, 0, 0, 2), raddr: v4(10, 0, 0, 9), lport: 22, rport: 51000, proto: 6, family: F.FLT_FAMILY_V4 }, { last_seen: now - 1n * S, state: F.FLT_CT_ESTABLISHED, flags: F.FLT_CT_F_ORIG_REMOTE | F.FLT_CT_F_REPLIED }],
        [{ laddr: v4(10, 0, 0, 2), raddr: v4(10, 0, 0, 1), lport: 7, rport: 0, proto: 1, family: F.FLT_FAMILY_V4 }, { last_seen: now - 40n * S, state: F.FLT_CT_ICMP, flags: 0 }],
        [{ laddr: v4(10, 0, 0, 2), raddr: v4(10, 0, 0, 53), lport: 5353, rport: 53, proto: 17, family: F.FLT_FAMILY_V4 }, { last_seen: now - 20n * S, state: F.FLT_CT_UDP, flags: 0 }],
      ],
      cfg(),
      now,
    );
    expect(rows.map((r) => [r.proto, r.local, r.remote, r.state, r.openedBy, r.expiresInSeconds])).toEqual([
      ['tcp', '10.0.0.2:22', '10.0.0.9:51000', 'established', 'remote', F.FLT_CT_TCP_ESTABLISHED_S - 1],
      ['tcp', '10.0.0.2:40000', '10.0.0.1:443', 'established', 'local', F.FLT_CT_TCP_ESTABLISHED_S - 10],
      ['udp', '10.0.0.2:5353', '10.0.0.53:53', 'udp', 'local', F.FLT_CT_UDP_SINGLE_S - 20],
    ]);
  });

  it('configured timeouts and the test clock are honoured; IPv6 in brackets', () => {
    const six = Uint8Array.from([0xfd, 0, ...new Array(13).fill(0), 1]);
    const rows = flowViews([[{ laddr: six, raddr: six, lport: 1, rport: 2, proto: 17, family: F.FLT_FAMILY_V6 }, { last_seen: 5n * S, state: F.FLT_CT_UDP, flags: F.FLT_CT_F_REPLIED }]], cfg({ now: 8n * S, udp_stream: 10 }), 999n * S);
    expect(rows).toEqual([{ family: 6, proto: 'udp', local: '[fd00::1]:1', remote: '[fd00::1]:2', state: 'udp', openedBy: 'local', replied: true, lastSeenSecondsAgo: 3, expiresInSeconds: 7 }]);
  });

  it('pages: limit and offset take a window of the newest-first list; total counts them all', () => {
    const flows = Array.from({ length: 5 }, (_, i) => ({ local: `10.0.0.2:${i}` }) as FlowView);
    const ports = (p: { flows: FlowView[] }): string[] => p.flows.map((f) => f.local.split(':')[1]);
    expect(pageFlows(flows)).toEqual({ total: 5, flows });
    expect(ports(pageFlows(flows, { limit: 2 }))).toEqual(['0', '1']);
    expect(ports(pageFlows(flows, { limit: 2, offset: 2 }))).toEqual(['2', '3']);
    expect(ports(pageFlows(flows, { limit: 2, offset: 4 }))).toEqual(['4']);
    expect(pageFlows(flows, { offset: 9 })).toEqual({ total: 5, flows: [] });
  });
});
