// SPDX-License-Identifier: Apache-2.0
// Where pins go, decided from two mountinfo files: this process's and pid 1's (the host's).
import { describe, expect, it } from 'vitest';
import { chooseSite, parseMountinfo } from '../../src/loader/pinfs.js';

/** the host, as pid 1 sees it: bpffs 0:39 at /sys/fs/bpf */
const HOST = `21 26 0:20 / /proc rw,relatime - proc proc rw
22 26 0:21 / /sys rw,relatime - sysfs sysfs rw
26 1 254:0 / / rw,relatime - ext4 /dev/vda rw
44 22 0:39 / /sys/fs/bpf rw,relatime shared:7 - bpf bpf rw
46 26 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw
`;
const HOST_NO_BPFFS = HOST.split('\n').filter((l) => !l.includes(' bpf ')).join('\n');
/** ip netns exec: a copy of the mounts (new ids) with a fresh sysfs on /sys, nothing below it */
const NETNS_EXEC = `60 62 0:20 / /proc rw,relatime - proc proc rw
62 1 254:0 / / rw,relatime - ext4 /dev/vda rw
63 62 254:0 /run/netns /run/netns rw,relatime master:1 - ext4 /dev/vda rw
64 62 0:40 / /sys rw,relatime - sysfs blue rw
`;
/** ... where an earlier command mounted a bpffs of its own */
const NETNS_EXEC_BPFFS = `${NETNS_EXEC}65 64 0:41 / /sys/fs/bpf rw,relatime - bpf bpf rw\n`;
/** unshare -m: a copy of the host's mounts, the same bpffs instance (0:39) under a new id */
const UNSHARE = HOST.replace(/^(\d+) (\d+)/gm, (_, a: string, b: string) => `${Number(a) + 100} ${Number(b) + 100}`);

const choose = (self: string, host: string | null, reachable: boolean, create: boolean): string =>
  chooseSite(parseMountinfo(self), host === null ? null : parseMountinfo(host), () => reachable, create);

describe('where pins go', () => {
  it('parses mount ids, devices, targets (octal escapes) and types', () => {
    expect(parseMountinfo('44 22 0:39 / /sys/fs/bpf rw,relatime shared:7 - bpf bpf rw\n45 22 0:50 / /mnt/a\\040b rw - tmpfs x rw\n')).toEqual([
      { id: 44, dev: '0:39', target: '/sys/fs/bpf', fstype: 'bpf' },
      { id: 45, dev: '0:50', target: '/mnt/a b', fstype: 'tmpfs' },
    ]);
  });

  it("in the host's mount namespace: its bpffs, or one mounted there", () => {
    expect(choose(HOST, HOST, false, true)).toBe('here');
    expect(choose(HOST_NO_BPFFS, HOST_NO_BPFFS, false, true)).toBe('mount');
    // nothing mounted is nothing pinned: reading mounts nothing
    expect(choose(HOST_NO_BPFFS, HOST_NO_BPFFS, false, false)).toBe('none');
    // pid 1's mounts unreadable: this is taken for the host
    expect(choose(HOST, null, false, true)).toBe('here');
  });

  it('under ip netns exec: the host\'s bpffs through /proc/1/root, or a refusal; never a bpffs of its own', () => {
    expect(choose(NETNS_EXEC, HOST, true, true)).toBe('host-root');
    expect(choose(NETNS_EXEC, HOST, false, true)).toBe('unreachable');
    expect(choose(NETNS_EXEC, HOST, false, false)).toBe('unreachable');
    expect(choose(NETNS_EXEC_BPFFS, HOST, false, true)).toBe('unreachable');
    expect(choose(NETNS_EXEC_BPFFS, HOST, true, false)).toBe('host-root');
    expect(choose(NETNS_EXEC, HOST_NO_BPFFS, true, true)).toBe('no-host-bpffs');
    expect(choose(NETNS_EXEC, HOST_NO_BPFFS, true, false)).toBe('none');
  });

  it('under unshare -m: the copied mount is the host\'s bpffs itself', () => {
    expect(choose(UNSHARE, HOST, false, true)).toBe('shared');
  });
});
