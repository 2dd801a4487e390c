// SPDX-License-Identifier: Apache-2.0
// The network interfaces of this process's network namespace as the kernel reports them (name,
// link kind, addresses), and a watch for interfaces that come and go.
//
// Asked through iproute2 (`ip -d -j addr show`: one netlink dump of links with their IFLA_INFO_KIND
// and addresses) rather than /sys/class/net: /sys shows the namespace it was mounted in, and a
// process that entered another network namespace with `nsenter --net` (as the tests and many
// container tools do) still sees the old one's interfaces there. iproute2 is on every Debian and
// Ubuntu system.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { EbpfnetError } from '../errors.js';

export interface NetInterface {
  name: string;
  ifindex: number;
  /** IFLA_INFO_KIND: vxlan, veth, bridge, wireguard, ...; null for devices without one */
  kind: string | null;
  /** holds an IPv4 or IPv6 address beyond link scope: the fe80:: address every IPv6 link gets
   * when it comes up does not count (else every interface but those with IPv6 off would) */
  addressed: boolean;
}

interface IpAddrJson {
  ifindex: number;
  ifname: string;
  linkinfo?: { info_kind?: string };
  addr_info?: Array<{ scope?: string }>;
}

const noIp = (e: unknown): EbpfnetError =>
  new EbpfnetError('EBPFNET_NOT_SUPPORTED', 'list interfaces', `cannot run ip (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { hint: 'install iproute2: apt-get install iproute2', cause: e });

/** Every interface here, in ifindex order. */
export function netInterfaces(): NetInterface[] {
  let out: string;
  try {
    out = execFileSync('ip', ['-d', '-j', 'addr', 'show'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  } catch (e) {
    throw noIp(e);
  }
  const list = JSON.parse(out || '[]') as IpAddrJson[];
  return list
    .map((l) => ({
      name: l.ifname,
      ifindex: l.ifindex,
      kind: l.linkinfo?.info_kind ?? null,
      addressed: (l.addr_info ?? []).some((a) => a.scope !== 'link'),
    }))
    .sort((a, b) => a.ifindex - b.ifindex);
}

export interface InterfaceWatch {
  close(): void;
}

/**
 * Calls `onChange` (at most once per `settleMs`) after links or addresses of this network
 * namespace changed: a child `ip -o monitor link address` prints a line per netlink event, so
 * nothing runs while nothing happens. If the child dies it is started again after a second and
 * `onChange` runs then too (events in between were missed). `onError` hears once when `ip` cannot
 * run at all.
 */
export function watchInterfaces(onChange: () => void, opts: { settleMs?: number; onError?: (e: EbpfnetError) => void } = {}): InterfaceWatch {
  const settle = opts.settleMs ?? 100;
  let child: ChildProcess | null = null;
  let timer: NodeJS.Timeout | null = null;
  let restart: NodeJS.Timeout | null = null;
  let closed = false;
  const kick = (): void => {
    if (closed || timer) return;
    timer = setTimeout(() => {
      timer = null;
      if (!closed) onChange();
    }, settle);
  };
  const monitor = ['ip', '-o', 'monitor', 'link', 'address'];
  // setpriv --pdeathsig: the child dies with this process, even on kill -9 (an orphaned monitor in a
  // network namespace where nothing changes would never write again, never see EPIPE, and keep
  // the namespace alive); plain `ip` where util-linux's setpriv is missing
  let wrap = true;
  const start = (): void => {
    const [cmd, ...args] = wrap ? ['setpriv', '--pdeathsig', 'KILL', '--', ...monitor] : monitor;
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    child = c;
    c.stdout!.on('data', kick);
    c.on('error', (e) => {
      if (wrap && (e as NodeJS.ErrnoException).code === 'ENOENT') {
        wrap = false;
        child = null;
        if (!closed) start();
        return;
      }
      if (!closed) opts.onError?.(noIp(e));
      closed = true;
    });
    c.on('exit', (code) => {
      if (closed || child !== c) return;
      // setpriv could not run ip (126, 127: util-linux's exec failures): no point in restarting
      if (wrap && (code === 126 || code === 127)) {
        closed = true;
        opts.onError?.(noIp(new Error('ip not found')));
        return;
      }
      restart = setTimeout(() => {
        restart = null;
        if (closed) return;
        start();
        kick();
      }, 1000);
    });
  };
  start();
  return {
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      if (restart) clearTimeout(restart);
      child?.kill('SIGTERM');
      child = null;
    },
  };
}
