// SPDX-License-Identifier: Apache-2.0
// --iface patterns (names, lists, globs, all) against an interface list, and the tunnel warnings.
import { describe, expect, it } from 'vitest';
import { EbpfnetError } from '../../src/errors.js';
import { checkPattern, describeResolved, resolveInterfaces, splitPatterns, tunnelWarnings, type IfaceFact, type ResolveOptions } from '../../src/filter/ifaces.js';
import { parseConfig } from '../../src/agent/config.js';

const f = (name: string, addressed = true, kind: string | null = null): IfaceFact => ({ name, kind, addressed });
const HOST = [f('lo'), f('eth0'), f('eth1', false), f('veth1a', true, 'veth'), f('veth2b', true, 'veth'), f('vxlan7', false, 'vxlan'), f('wg0', true, 'wireguard'), f('br0', true, 'bridge')];
const CLI: ResolveOptions = { op: 'filter', missing: 'error', emptyIsError: true };
const names = (values: string[], o = CLI, ifs = HOST): string[] => resolveInterfaces(splitPatterns(values), ifs, o).names;

/** the error a call throws, as the CLI prints it */
function failure(fn: () => unknown): { code: string; text: string } {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof EbpfnetError)) throw e;
    return { code: e.code, text: e.message };
  }
  throw new Error('did not throw');
}

describe('--iface patterns', () => {
  it('repeated values and comma lists are one list, in order, each name once', () => {
    expect(splitPatterns(['eth0,eth1', ' veth1a ', 'eth0', ',,'])).toEqual(['eth0', 'eth1', 'veth1a']);
    expect(names(['eth1,eth0', 'eth1'])).toEqual(['eth1', 'eth0']);
  });

  it('globs match like the shell: *, ?, classes and negated classes', () => {
    expect(names(['veth*'])).toEqual(['veth1a', 'veth2b']);
    expect(names(['eth?'])).toEqual(['eth0', 'eth1']);
    expect(names(['veth[12]?'])).toEqual(['veth1a', 'veth2b']);
    expect(names(['veth[!1]*'])).toEqual(['veth2b']);
    expect(names(['eth[0-0]'])).toEqual(['eth0']);
    // a dot is a dot, not any character
    expect(() => names(['eth.'])).toThrow(/no interface named eth\./);
    expect(names(['*'])).toEqual(HOST.map((x) => x.name));
  });

  it('all is every interface with an address except lo, however they are named', () => {
    expect(names(['all'])).toEqual(['eth0', 'veth1a', 'veth2b', 'wg0', 'br0']);
    // all and a name it does not cover (no address) together
    expect(names(['all', 'vxlan7'])).toEqual(['eth0', 'veth1a', 'veth2b', 'wg0', 'br0', 'vxlan7']);
  });

  it('says what each pattern resolved to, in the start line form', () => {
    const r = resolveInterfaces(['veth*', 'eth0', 'all'], HOST, CLI).resolved;
    expect(describeResolved(r)).toBe('veth* -> veth1a, veth2b; eth0; all -> eth0, veth1a, veth2b, wg0, br0');
    expect(describeResolved(resolveInterfaces(['eth0', 'eth1'], HOST, CLI).resolved)).toBe('eth0, eth1');
    expect(describeResolved(resolveInterfaces(['tap*'], HOST, { ...CLI, emptyIsError: false }).resolved)).toBe('tap* -> none yet');
  });

  it('a glob, a list or all that names nothing is one line of bad usage naming the interfaces there', () => {
    const glob = failure(() => names(['tap*']));
    expect(glob).toEqual({ code: 'EBPFNET_USAGE', text: "filter: 'tap*' matches no interface; interfaces here: lo, eth0, eth1, veth1a, veth2b, vxlan7, wg0, br0; nothing was attached" });
    const list = failure(() => names(['eth0,eth9']));
    expect(list).toEqual({ code: 'EBPFNET_USAGE', text: 'filter: no interface named eth9; interfaces here: lo, eth0, eth1, veth1a, veth2b, vxlan7, wg0, br0' });
    const all = failure(() => names(['all'], CLI, [f('lo'), f('dummy0', false)]));
    expect(all.text).toBe("filter: 'all' names no interface: none but lo has an address; interfaces here: lo, dummy0; nothing was attached");
    for (const bad of ['veth[1', 'eth 0', 'a'.repeat(16), 'eth0;rm', '']) {
      const e = failure(() => resolveInterfaces([bad], HOST, CLI));
      expect(e.code, bad).toBe('EBPFNET_USAGE');
      expect(e.text.split('\n')).toHaveLength(1);
    }
    expect(failure(() => checkPattern('veth[1', 'filter')).text).toMatch(/'veth\[1' has a '\[' without its '\]'/);
  });

  it('under the agent a wildcard may match nothing yet, and a name may be passed over or kept', () => {
    const agent: ResolveOptions = { op: 'filter', missing: 'skip', emptyIsError: false };
    expect(names(['tap*', 'eth9', 'eth0'], agent)).toEqual(['eth0']);
    expect(names(['eth9'], { ...agent, missing: 'keep' })).toEqual(['eth9']);
    expect(names(['eth9', 'eth8'], { ...agent, missing: (n) => (n === 'eth9' ? 'skip' : 'keep') })).toEqual(['eth8']);
  });

  it('the agent config takes the same forms and refuses a malformed one in one line', () => {
    const c = parseConfig("filter:\n  interfaces: ['veth*', 'eth0,eth1', all]\n  rules: ['deny tcp/22']\n");
    expect(c.filter!.interfaces).toEqual(['veth*', 'eth0', 'eth1', 'all']);
    const e = failure(() => parseConfig("filter:\n  interfaces: ['veth[']\n", 'a.yaml'));
    expect(e.code).toBe('EBPFNET_USAGE');
    expect(e.text).toMatch(/^read config a\.yaml:2: filter\.interfaces: 'veth\[' has a '\[' without its '\]'/);
    expect(failure(() => parseConfig('filter:\n  interfaces: [1]\n', 'a.yaml')).text).toMatch(/^read config a\.yaml:2: filter\.interfaces\[0\]: 1 is not a string; write interface names, globs/);
  });
});

describe('tunnel warnings', () => {
  it('one line per tunnel device without a filter, saying why and how to cover it', () => {
    const lines = tunnelWarnings(HOST, new Set(['eth0']));
    expect(lines).toEqual([
      'warning: tunnel vxlan7 (vxlan) has no ebpfnet filter: packets decapsulated there are not filtered, whatever the underlay\'s filter says; cover it with --iface vxlan7',
      'warning: tunnel wg0 (wireguard) has no ebpfnet filter: packets decapsulated there are not filtered, whatever the underlay\'s filter says; cover it with --iface wg0 (or --iface all)',
    ]);
    // veth and bridge are not tunnels; a filtered tunnel is not warned about
    expect(tunnelWarnings(HOST, new Set(['vxlan7', 'wg0']))).toEqual([]);
    for (const kind of ['geneve', 'gre', 'gretap', 'ip6gre', 'ipip', 'sit', 'ip6tnl']) expect(tunnelWarnings([f('t0', true, kind)], new Set())).toHaveLength(1);
  });
});
