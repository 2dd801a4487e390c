// SPDX-License-Identifier: Apache-2.0
// `ebpfnet filter` end to end on two network namespaces joined by a veth pair: real pings and TCP
// connects from `source` to servers on `target`, where the filter runs.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { CliProcess, cliFor, runCli } from '../helpers/cli.js';
import { describeKernel, heldPrograms, ok, sh, xdpOn } from '../helpers/kernel.js';
import { progInfo } from '../../src/loader/index.js';
import * as F from '../../src/gen/filter.js';
import { filterPinDir } from '../helpers/filter-maps.js';
import { makeTwoHosts, type TwoHosts } from '../helpers/netns.js';

/** TCP servers on the target that answer with their port. */
function servers(ns: string, ports: number[]): ChildProcess {
  const js = `for (const p of [${ports.join(',')}]) require('net').createServer((s) => s.end(String(p))).listen(p, '0.0.0.0'); console.log('up')`;
  return spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', js], { stdio: ['ignore', 'pipe', 'inherit'] });
}

/** One TCP connect with a short timeout (a single SYN): the server's answer, or the error. */
function connect(ns: string, ip: string, port: number): string {
  const js = `const s=require('net').connect(${port},'${ip}');s.setTimeout(700,()=>{console.log('TIMEOUT');process.exit()});s.on('data',d=>{console.log('OK '+d);process.exit()});s.on('error',e=>{console.log(e.code);process.exit()})`;
  return sh('ip', ['netns', 'exec', ns, process.execPath, '-e', js]).trim();
}

const ping = (h: TwoHosts, count = 1): boolean => ok('ping', ['-c', String(count), '-i', '0.2', '-W', '1', h.targetIp], h.source, 15_000);

describeKernel('ebpfnet filter (two namespaces)', () => {
  let h: TwoHosts;
  let srv: ChildProcess;
  beforeEach(async () => {
    h = makeTwoHosts();
    srv = servers(h.target, [22, 80]);
    await new Promise((r) => srv.stdout!.once('data', r));
  });
  afterEach(() => {
    srv?.kill('SIGKILL');
    runCli(['unload', '--iface', h.targetIf], { ns: h.target });
    h?.cleanup();
  });

  it('drops ping and SSH, passes HTTP, counts exactly, and SIGINT detaches everything', async () => {
    expect(ping(h)).toBe(true);
    expect(connect(h.source, h.targetIp, 22)).toBe('OK 22');
    const f = new CliProcess(['filter', '--iface', h.targetIf, '--deny', 'tcp/22', '--deny', 'icmp', '--interval', '1'], { ns: h.target });
    await f.waitFor(/filtering/);
    expect(f.stdout).toContain(`${h.targetIf}: xdp native: deny tcp/22, deny icmp; default allow`);
    expect(xdpOn(h.targetIf, h.target)).toBe(true);
    expect(ping(h, 3)).toBe(false);
    expect(connect(h.source, h.targetIp, 22)).toBe('TIMEOUT');
    expect(connect(h.source, h.targetIp, 80)).toBe('OK 80');
    expect(await f.stop('SIGINT')).toBe(0);
    expect(f.stdout).toMatch(/deny icmp\s+3 packets/);
    expect(f.stdout).toMatch(/deny tcp\/22\s+1 packet\b/);
    expect(f.stdout).toContain(`${h.targetIf}: detached`);
    expect(xdpOn(h.targetIf, h.target)).toBe(false);
    expect(ping(h)).toBe(true);
    expect(connect(h.source, h.targetIp, 22)).toBe('OK 22');
  });

  it('SIGTERM detaches too; the tc hook filters the same way', async () => {
    const f = new CliProcess(['filter', '--iface', h.targetIf, '--hook', 'tc', '--deny', 'icmp'], { ns: h.target });
    await f.waitFor(/filtering/);
    // what this command loaded, by id: the programs it holds (other processes run filters of their own)
    const loaded = heldPrograms(f.child.pid!);
    expect(loaded.length).toBeGreaterThan(0);
    expect(f.stdout).toContain('tc ingress (tcx)');
    expect(ping(h)).toBe(false);
    expect(await f.stop('SIGTERM')).toBe(0);
    expect(ping(h)).toBe(true);
    // nothing this command loaded is left
    expect(loaded.filter((id) => progInfo(id) !== null)).toEqual([]);
    expect(sh('bpftool', ['net', 'show'])).not.toContain(h.targetIf);
  });

  it('--pin survives the command, set changes rules on the next packet, status shows it, unload removes it', () => {
    const r = runCli(['filter', '--iface', h.targetIf, '--deny', 'icmp', '--deny', 'tcp/22', '--pin'], { ns: h.target });
    expect(r.status, r.stderr).toBe(0);
    expect(xdpOn(h.targetIf, h.target)).toBe(true);
    expect(ping(h)).toBe(false);
    const s = runCli(['filter', 'set', '--iface', h.targetIf, '--deny', 'tcp/22'], { ns: h.target });
    expect(s.status, s.stderr).toBe(0);
    expect(ping(h)).toBe(true);
    expect(connect(h.source, h.targetIp, 22)).toBe('TIMEOUT');
    const st = runCli(['status'], { ns: h.target });
    expect(st.stdout).toContain(`${h.targetIf}: xdp native: deny tcp/22; default allow`);
    expect(st.stdout).toMatch(/deny tcp\/22\s+1 packet\b/);
    const again = runCli(['filter', '--iface', h.targetIf, '--deny', 'icmp'], { ns: h.target });
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/a pinned ebpfnet filter is already there/);
    const u = runCli(['unload', '--iface', h.targetIf], { ns: h.target });
    expect(u.status, u.stderr).toBe(0);
    expect(xdpOn(h.targetIf, h.target)).toBe(false);
    expect(connect(h.source, h.targetIp, 22)).toBe('OK 22');
  });

  it('status shows the pinned filters it can open and one line for one it cannot (exit 1)', () => {
    // the source's end of the link, for a second pinned filter
    const srcIf = sh('ip', ['-n', h.source, '-o', 'link', 'show', 'type', 'veth']).split(':')[1].trim().split('@')[0];
    expect(runCli(['filter', '--iface', h.targetIf, '--deny', 'tcp/22', '--pin'], { ns: h.target }).status).toBe(0);
    expect(runCli(['filter', '--iface', srcIf, '--deny', 'udp', '--pin'], { ns: h.source }).status).toBe(0);
    try {
      // a pin this build cannot open, as another version's filter would be
      const dir = filterPinDir(h.targetIf, h.target);
      rmSync(`${dir}/${F.FLT_CHUNKS.name}`);
      const st = runCli(['status', '--all-namespaces'], { ns: h.source });
      expect(st.status).toBe(1);
      expect(st.stdout).toContain(`${srcIf}: xdp native: deny udp; default allow`);
      expect(st.stderr.trim().split('\n').filter((l) => l.includes(dir))).toEqual([`ebpfnet: open pinned map ${dir}/${F.FLT_CHUNKS.name}: nothing is pinned there (ENOENT)`]);
    } finally {
      expect(runCli(['unload', '--iface', srcIf], { ns: h.source }).status).toBe(0);
    }
    // unload still removes the broken one
    expect(runCli(['unload', '--iface', h.targetIf], { ns: h.target }).status).toBe(0);
    expect(xdpOn(h.targetIf, h.target)).toBe(false);
  });

  it('refuses an interface that carries another XDP program unless --replace', async () => {
    sh('ip', ['-n', h.target, 'link', 'set', 'dev', h.targetIf, 'xdpgeneric', 'obj', `${process.cwd()}/build/bpf/selftest.bpf.o`, 'sec', 'xdp']);
    const r = runCli(['filter', '--iface', h.targetIf, '--deny', 'icmp'], { ns: h.target });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/XDP program 'st_xdp' \(id \d+\) is already attached there in generic mode; add --replace/);
    const f = new CliProcess(['filter', '--iface', h.targetIf, '--deny', 'icmp', '--replace'], { ns: h.target });
    await f.waitFor(/filtering/);
    expect(ping(h)).toBe(false);
    expect(await f.stop()).toBe(0);
    expect(xdpOn(h.targetIf, h.target)).toBe(false);
  });

  it('--metrics serves Prometheus counters with the exact kernel counts', async () => {
    const port = 19000 + (process.pid % 1000);
    const f = new CliProcess(['filter', '--iface', h.targetIf, '--deny', 'icmp', '--metrics', `127.0.0.1:${port}`], { ns: h.target });
    await f.waitFor(/filtering/);
    expect(ping(h, 2)).toBe(false);
    // the metrics server listens inside the target namespace's loopback
    const body = sh('nsenter', [`--net=/run/netns/${h.target}`, process.execPath, '-e', `fetch('http://127.0.0.1:${port}/metrics').then(r=>r.text()).then(t=>console.log(t))`]);
    expect(body).toContain(`ebpfnet_filter_packets_total{interface="${h.targetIf}",rule="icmp",action="deny"} 2`);
    expect(body).toMatch(/# TYPE ebpfnet_filter_bytes_total counter/);
    expect(await f.stop()).toBe(0);
  });

  it('--dry-run compiles and verifies without attaching; explain names the deciding rule', () => {
    const d = runCli(['filter', '--iface', h.targetIf, '--deny', 'tcp/22', '--deny', 'icmp', '--dry-run'], { ns: h.target });
    expect(d.status, d.stderr).toBe(0);
    expect(d.stdout).toMatch(/ipv4 proto 6 port 22: rule #0 deny/);
    expect(d.stdout).toMatch(/verifier: filter_xdp ok \(\d+ instructions processed\)/);
    expect(d.stdout).toContain('dry run: nothing attached');
    expect(xdpOn(h.targetIf, h.target)).toBe(false);
    const e = runCli(['filter', 'explain', 'tcp 10.0.0.1:5555 -> 10.0.0.2:22', '--deny', 'tcp/22', '--allow', 'tcp/22 from 10.0.0.0/24']);
    expect(e.status, e.stderr).toBe(0);
    expect(e.stdout).toBe("tcp 10.0.0.1:5555 -> 10.0.0.2:22: PASS by rule 'allow tcp/22 from 10.0.0.0/24'\nthe reference model agrees\n");
    const e2 = runCli(['filter', 'explain', 'udp [fd00::1]:5 -> [fd00::2]:53', '--deny', 'icmp', '--default', 'deny']);
    expect(e2.stdout).toContain('DROP by the default (deny)');
  });

  it('bad input: one clear line, exit 2, nothing attached', () => {
    for (const [args, msg] of [
      [['--deny', 'tcp/99999'], /port 99999 is out of range/],
      [['--deny', 'icmp/22'], /icmp takes no types/],
      [['--deny', 'from 10.0.0.0/33'], /prefix length \/33 is out of range/],
      [['--deny', 'tcp/20-10'], /backwards/],
      [['--deny', 'foo'], /unknown protocol 'foo'/],
      [['--deny', 'icmp', '--iface', 'nosuch0'], /no interface named nosuch0; interfaces here: .*lo/],
      [['--deny', 'icmp', '--mode', 'turbo'], /'turbo' is not native, generic or auto/],
    ] as const) {
      const r = runCli(['filter', ...(args.includes('--iface') ? [] : ['--iface', h.targetIf]), ...args], { ns: h.target });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
    }
    expect(xdpOn(h.targetIf, h.target)).toBe(false);
  });

  it('not root: one line, exit 1, nothing attached (from a private checkout too)', () => {
    // as nobody: from a copy when the checkout is private (mode 0700), the Node too when it is the
    // project-local one inside such a checkout
    const nobody = cliFor(65534);
    try {
      const nr = sh('sh', ['-c', `nsenter --net=/run/netns/${h.target} setpriv --reuid=65534 --regid=65534 --clear-groups ${nobody.node} ${nobody.cli} filter --iface ${h.targetIf} --deny icmp 2>&1; echo "exit=$?"`]);
      expect(nr).toMatch(/^ebpfnet: filter: needs root; run it as root: from a root shell, or with sudo \(needs CAP_BPF and CAP_NET_ADMIN\)\nexit=1\n$/);
    } finally {
      nobody.cleanup();
    }
    expect(xdpOn(h.targetIf, h.target)).toBe(false);
  });
});
