// SPDX-License-Identifier: Apache-2.0
// The root-namespace guard's judgement (test/helpers/root-netns.ts): which `ip -o` lines are this
// process's doing, on a machine where other processes change the root namespace too.
import { describe, expect, it } from 'vitest';
import { nameTags, oursInRoot, parseIpLine } from '../helpers/root-netns.js';

const lines = {
  newLink: '3: ebh4242x1@ebp4242x1: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 qdisc noop state DOWN group default \\    link/ether 72:f1:1f:ab:e1:34 brd ff:ff:ff:ff:ff:ff',
  addr4: '3: ebh4242x1    inet 10.199.9.1/24 scope global ebh4242x1\\       valid_lft forever preferred_lft forever',
  addr6: 'Deleted 3: ebh4242x1    inet6 fd00:199:9::1/64 scope global nodad \\       valid_lft forever preferred_lft forever',
  gone: 'Deleted 2: ebp4242x1@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether b2:cd:82:3d:be:e4 brd ff:ff:ff:ff:ff:ff',
  harness: '9: ekilh24242@if8: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP',
  harnessAddr: '9: echuh7597    inet 10.196.98.1/24 scope global echuh7597\\       valid_lft forever preferred_lft forever',
  othersLink: '5: ebh805x1@if74: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP',
  othersAddr: '5: ebh805x1    inet 10.199.3.1/24 scope global ebh805x1\\       valid_lft forever preferred_lft forever',
  onLo: '1: lo    inet 10.198.7.1/32 scope global lo\\       valid_lft forever preferred_lft forever',
  eth0: '2: eth0    inet 172.16.0.5/24 brd 172.16.0.255 scope global eth0\\       valid_lft forever preferred_lft forever',
  docker: '7: veth12ab@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master docker0 state UP',
};

describe('root-namespace guard', () => {
  it('reads interface names and addresses from ip -o lines, deletions included', () => {
    expect(parseIpLine(lines.newLink)).toMatchObject({ ifname: 'ebh4242x1' });
    expect(parseIpLine(lines.newLink)?.addr).toBeUndefined();
    expect(parseIpLine(lines.addr4)).toMatchObject({ ifname: 'ebh4242x1', addr: '10.199.9.1/24' });
    expect(parseIpLine(lines.addr6)).toMatchObject({ ifname: 'ebh4242x1', addr: 'fd00:199:9::1/64' });
    expect(parseIpLine(lines.gone)).toMatchObject({ ifname: 'ebp4242x1' });
    expect(parseIpLine('')).toBeNull();
  });

  it("counts this process's names and the suite's addresses on other interfaces, not other runs' names", () => {
    const all = Object.values(lines);
    // pid 14242: names tagged 4242 (pid % 10^4) and 14242 (pid % 10^5) are this process's
    expect(oursInRoot(all, nameTags(14242)).map((c) => c.line)).toEqual([lines.newLink, lines.addr4, lines.addr6, lines.gone, lines.onLo]);
    // a process whose names carry 805 (pid 10805): that run's interface and its address are its own
    expect(oursInRoot(all, nameTags(10805)).map((c) => c.ifname)).toEqual(['ebh805x1', 'ebh805x1', 'lo']);
    // the machine's own interfaces and addresses are nobody's here
    expect(oursInRoot([lines.othersLink, lines.othersAddr, lines.eth0, lines.docker, lines.harness, lines.harnessAddr], nameTags(14242))).toEqual([]);
    // the fault scripts' names (tools/lib/harness.mjs) carry their process's id too
    expect(oursInRoot([lines.harness, lines.harnessAddr], nameTags(24242)).map((c) => c.ifname)).toEqual(['ekilh24242']);
  });
});
