// SPDX-License-Identifier: Apache-2.0
// Pinned filters and network namespaces: two namespaces each hold an interface of the same name
// (two makeTwoHosts() pairs whose target ends are renamed alike), and the CLI runs inside them the
// two ways users run it: `nsenter --net` (the host's mounts) and `ip netns exec` (a private /sys).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { CLI, runCli, type CliResult } from '../helpers/cli.js';
import { describeKernel, ok, sh, xdpOn } from '../helpers/kernel.js';
import { makeTwoHosts, type TwoHosts } from '../helpers/netns.js';
import { ensureCgroup2 } from '../../src/loader/index.js';

const PINS = '/sys/fs/bpf/ebpfnet/filter';
const RECORDS = '/run/ebpfnet/filter';
/** the same name for both namespaces' interfaces, and nobody else's */
const IF = `ebq${process.pid % 100000}`;

const inode = (ns: string): number => statSync(`/run/netns/${ns}`).ino;
const ping = (h: TwoHosts): boolean => ok('ping', ['-c', '1', '-W', '1', h.targetIp], h.source, 10_000);

/** `ip netns exec NS ebpfnet ARGS`: a private mount namespace with a fresh /sys. */
function netnsExec(ns: string, args: string[]): CliResult {
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, CLI, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Runs `sh -c SCRIPT` as pid 1 of a new pid (and mount) namespace: /proc/1/root is then reachable. */
const asPid1 = (script: string, env: NodeJS.ProcessEnv = process.env): CliResult => {
  const r = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'sh', '-c', script], { encoding: 'utf8', timeout: 60_000, env });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
};

/** Whether this machine lets a root process reach pid 1's root (some sandboxes forbid it). */
const pid1Reachable = (): boolean => {
  try {
    readdirSync('/proc/1/root/');
    return true;
  } catch {
    return false;
  }
};

describeKernel('pinned filters in network namespaces', () => {
  let a: TwoHosts;
  let b: TwoHosts;
  beforeEach(() => {
    a = makeTwoHosts();
    b = makeTwoHosts();
    for (const h of [a, b]) {
      sh('ip', ['-n', h.target, 'link', 'set', 'dev', h.targetIf, 'down']);
      sh('ip', ['-n', h.target, 'link', 'set', 'dev', h.targetIf, 'name', IF]);
      sh('ip', ['-n', h.target, 'link', 'set', 'dev', IF, 'up']);
      h.targetIf = IF;
    }
  });
  afterEach(() => {
    for (const h of [a, b]) {
      if (!h) continue;
      // through the product first (detaches), then whatever a failed test left in our namespaces' folders
      runCli(['unload', '--all'], { ns: h.target });
      for (const root of [PINS, RECORDS]) rmSync(join(root, String(inode(h.target))), { recursive: true, force: true });
    }
    for (const p of [join(PINS, IF), join(RECORDS, `${IF}.0.json`), join(RECORDS, `${IF}.1.json`)]) rmSync(p, { recursive: true, force: true });
    for (const d of [PINS, RECORDS]) {
      try {
        rmdirSync(d);
      } catch {
        /* other filters live there */
      }
    }
    a?.cleanup();
    b?.cleanup();
  });

  it('each namespace sees and removes only its own filter; --all-namespaces sees both', () => {
    const pa = runCli(['filter', '--iface', IF, '--deny', 'icmp', '--pin'], { ns: a.target });
    expect(pa.status, pa.stderr).toBe(0);
    expect(pa.stdout).toContain(`${IF}: pinned at ${PINS}/${inode(a.target)}/`);
    expect(ping(a)).toBe(false);

    // B: A's filter is not B's: not listed as local, and B may pin its own
    const sb = runCli(['status'], { ns: b.target });
    expect(sb.status, sb.stderr).toBe(0);
    expect(sb.stdout).toMatch(/^no pinned filters in this network namespace\n/);
    expect(sb.stdout).toMatch(/\d+ more pinned filters? in other network namespaces: ebpfnet status --all-namespaces/);
    const pb = runCli(['filter', '--iface', IF, '--deny', 'tcp/22', '--pin'], { ns: b.target });
    expect(pb.status, pb.stderr).toBe(0);
    const st = runCli(['status'], { ns: b.target });
    expect(st.stdout).toContain(`network namespace ${inode(b.target)} (ip netns ${b.target}), this one:\n${IF}: xdp native: deny tcp/22; default allow`);
    expect(st.stdout).not.toContain('deny icmp');
    const all = runCli(['status', '--all-namespaces'], { ns: b.target });
    expect(all.stdout).toContain(`network namespace ${inode(a.target)} (ip netns ${a.target}):\n${IF}: xdp native: deny icmp; default allow`);
    expect(all.stdout).toContain(`network namespace ${inode(b.target)} (ip netns ${b.target}), this one:\n${IF}: xdp native: deny tcp/22; default allow`);

    // unload in B removes B's only: A's stays attached and still drops
    const ub = runCli(['unload', '--iface', IF], { ns: b.target });
    expect(ub.status, ub.stderr).toBe(0);
    expect(ub.stdout).toBe(`${IF}: filter detached and unpinned\n`);
    expect(xdpOn(IF, b.target)).toBe(false);
    expect(xdpOn(IF, a.target)).toBe(true);
    expect(ping(a)).toBe(false);
    expect(ping(b)).toBe(true);
    // a plain unload in B, with nothing of B's left, touches nothing of A's
    const again = runCli(['unload'], { ns: b.target });
    expect(again.stdout).toBe('no pinned filters in this network namespace\n');
    expect(runCli(['unload', '--iface', IF], { ns: b.target }).status).toBe(1);
    expect(ping(a)).toBe(false);

    // --all-namespaces from B reaches A's
    const ua = runCli(['unload', '--iface', IF, '--all-namespaces'], { ns: b.target });
    expect(ua.status, ua.stderr).toBe(0);
    expect(ua.stdout).toBe(`${IF}: filter detached and unpinned (network namespace ${inode(a.target)} (ip netns ${a.target}))\n`);
    expect(ping(a)).toBe(true);
    expect(existsSync(join(PINS, String(inode(a.target))))).toBe(false);
  });

  it('a plain unload with two filters in scope asks for --all and removes nothing', () => {
    expect(runCli(['filter', '--iface', IF, '--deny', 'icmp', '--pin'], { ns: a.target }).status).toBe(0);
    const lo = runCli(['filter', '--iface', 'lo', '--deny', 'udp/9', '--pin'], { ns: a.target });
    expect(lo.status, lo.stderr).toBe(0);
    const u = runCli(['unload'], { ns: a.target });
    expect(u.status).toBe(2);
    expect(u.stderr).toBe(`ebpfnet: unload: 2 filters are pinned in this network namespace (lo, ${IF}); nothing was removed; name one with --iface, or remove them all with --all\n`);
    expect(xdpOn(IF, a.target)).toBe(true);
    expect(ping(a)).toBe(false);
    const all = runCli(['unload', '--all'], { ns: a.target });
    expect(all.status, all.stderr).toBe(0);
    expect(all.stdout.split('\n').sort().join('\n')).toBe(`\n${IF}: filter detached and unpinned\nlo: filter detached and unpinned`);
    expect(ping(a)).toBe(true);
    // with one filter in scope a plain unload removes it, as it always did
    expect(runCli(['filter', '--iface', IF, '--deny', 'icmp', '--pin'], { ns: a.target }).status).toBe(0);
    const one = runCli(['unload'], { ns: a.target });
    expect(one.status, one.stderr).toBe(0);
    expect(one.stdout).toBe(`${IF}: filter detached and unpinned\n`);
    expect(ping(a)).toBe(true);
  });

  it('an old-layout pin (by name) moves into its namespace\'s folder, said once; another namespace leaves it', () => {
    expect(runCli(['filter', '--iface', IF, '--deny', 'icmp', '--pin'], { ns: a.target }).status).toBe(0);
    // make it what an older ebpfnet left: /sys/fs/bpf/ebpfnet/filter/<ifname>, /run/ebpfnet/filter/<ifname>.N.json
    const ns = String(inode(a.target));
    const [idx] = readdirSync(join(PINS, ns));
    renameSync(join(PINS, ns, idx), join(PINS, IF));
    for (const slot of [0, 1]) renameSync(join(RECORDS, ns, `${idx}.${slot}.json`), join(RECORDS, `${IF}.${slot}.json`));
    rmdirSync(join(PINS, ns));
    rmdirSync(join(RECORDS, ns));

    // B has an IF too (with the same index), but the pinned program does not run there
    const sb = runCli(['status'], { ns: b.target });
    expect(sb.stdout).not.toContain('moved its pins');
    expect(existsSync(join(PINS, IF))).toBe(true);

    const sa = runCli(['status'], { ns: a.target });
    expect(sa.status, sa.stderr).toBe(0);
    expect(sa.stdout).toContain(`${IF}: moved its pins from ${PINS}/${IF} to ${PINS}/${ns}/${idx} (pins are kept by network namespace and interface index now)\n`);
    expect(sa.stdout).toContain(`${IF}: xdp native: deny icmp; default allow`);
    expect(existsSync(join(PINS, IF))).toBe(false);
    const sa2 = runCli(['status'], { ns: a.target });
    expect(sa2.stdout).not.toContain('moved its pins');
    expect(sa2.stdout).toContain(`${IF}: xdp native: deny icmp; default allow`);
    // the moved filter still filters, and is still the one set and unload reach
    expect(ping(a)).toBe(false);
    expect(runCli(['filter', 'set', '--iface', IF, '--deny', 'tcp/22'], { ns: a.target }).status).toBe(0);
    expect(ping(a)).toBe(true);
    expect(runCli(['unload', '--iface', IF], { ns: a.target }).status).toBe(0);
    expect(xdpOn(IF, a.target)).toBe(false);
  });

  it('a filter whose interface is gone is shown as gone and removed by name', () => {
    expect(runCli(['filter', '--iface', IF, '--deny', 'icmp', '--pin'], { ns: a.target }).status).toBe(0);
    sh('ip', ['-n', a.target, 'link', 'del', IF]);
    const st = runCli(['status'], { ns: a.target });
    expect(st.stdout).toMatch(new RegExp(`${IF}: its interface is gone \\(ifindex \\d+\\); the filter runs nowhere. Remove it with: ebpfnet unload --iface ${IF}\\n`));
    const u = runCli(['unload', '--iface', IF], { ns: a.target });
    expect(u.status, u.stderr).toBe(0);
    expect(u.stdout).toBe(`${IF}: pins removed (its interface was gone)\n`);
    expect(existsSync(join(PINS, String(inode(a.target))))).toBe(false);
  });

  it('an interface that got a gone one\'s index gets a filter of its own; the dead pins go, said once', () => {
    expect(runCli(['filter', '--iface', IF, '--deny', 'icmp', '--pin'], { ns: a.target }).status).toBe(0);
    const [idx] = readdirSync(join(PINS, String(inode(a.target))));
    sh('ip', ['-n', a.target, 'link', 'del', IF]);
    const reused = `${IF}r`;
    sh('ip', ['-n', a.target, 'link', 'add', reused, 'index', idx, 'type', 'veth', 'peer', 'name', `${IF}p`]);
    const r = runCli(['filter', '--iface', reused, '--deny', 'udp', '--pin'], { ns: a.target });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${reused}: removed the pins of a filter whose interface (${IF}) is gone and whose index this one has now\n`);
    expect(r.stdout).toContain(`${reused}: pinned at ${PINS}/${inode(a.target)}/${idx};`);
    const st = runCli(['status'], { ns: a.target });
    expect(st.stdout).toContain(`${reused}: xdp native: deny udp; default allow`);
    expect(st.stdout).not.toContain(IF + ':');
  });

  it('under ip netns exec, --pin never claims a persistence that does not hold', () => {
    const r = netnsExec(a.target, ['filter', '--iface', IF, '--deny', 'icmp', '--pin']);
    if (pid1Reachable()) {
      // the host's bpffs through /proc/1/root: the filter outlives the command
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(`${IF}: pinned at ${PINS}/${inode(a.target)}/`);
      expect(ping(a)).toBe(false);
    } else {
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(
        `ebpfnet: filter --pin: this command runs in a mount namespace of its own (as under ip netns exec) and cannot reach the host's bpffs (/sys/fs/bpf); pins made here would vanish when it exits; run it without a private /sys: nsenter --net=/run/netns/${a.target} ebpfnet ... (not ip netns exec)\n`,
      );
      expect(r.stdout).toBe('');
      expect(xdpOn(IF, a.target)).toBe(false);
      expect(ping(a)).toBe(true);
      // status there does not say "no pinned filters" about pins it cannot see
      expect(runCli(['filter', '--iface', IF, '--deny', 'icmp', '--pin'], { ns: a.target }).status).toBe(0);
      const st = netnsExec(a.target, ['status']);
      expect(st.status).toBe(1);
      expect(st.stderr).toMatch(/^ebpfnet: status: this command runs in a mount namespace of its own .* where the pins are; run it without a private \/sys/);
    }
    // a foreground filter needs no pins and works there
    const dry = netnsExec(b.target, ['filter', '--iface', IF, '--deny', 'icmp', '--dry-run']);
    expect(dry.status, dry.stderr).toBe(0);
  });

  it('under ip netns exec with pid 1 reachable, --pin lands in the host\'s bpffs and outlives everything', () => {
    // pid 1 of a new pid namespace is our own shell, in a copy of the host's mounts (the same bpffs)
    const r = asPid1(`ip netns exec ${a.target} ${process.execPath} ${CLI} filter --iface ${IF} --deny icmp --pin`);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`note: this command runs in a mount namespace of its own (ip netns exec); pinning in the host's bpffs through /proc/1/root/sys/fs/bpf\n`);
    expect(r.stdout).toContain(`${IF}: pinned at ${PINS}/${inode(a.target)}/`);
    // every process of that pid namespace is gone now; the filter is still there, and drops
    expect(xdpOn(IF, a.target)).toBe(true);
    expect(ping(a)).toBe(false);
    expect(runCli(['status'], { ns: a.target }).stdout).toContain(`${IF}: xdp native: deny icmp; default allow`);
  });

  it('where the host has no bpffs, ip netns exec never mounts one "for the user"', () => {
    // the host here is a copy of the mounts without bpffs: what a machine that never mounted it looks like
    const r = asPid1(`umount /sys/fs/bpf && ip netns exec ${a.target} ${process.execPath} ${CLI} filter --iface ${IF} --deny icmp --pin`);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      `ebpfnet: filter --pin: this command runs in a mount namespace of its own (as under ip netns exec) and the host has no bpffs mounted; one mounted here, and its pins, would vanish when this command exits; run it without a private /sys: nsenter --net=/run/netns/${a.target} ebpfnet ... (not ip netns exec)\n`,
    );
    expect(xdpOn(IF, a.target)).toBe(false);
  });

  it('the agent under ip netns exec: refuses to pin where pins would vanish; pins in the host\'s bpffs otherwise', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebpfnet-pins-agent-'));
    try {
      writeFileSync(join(dir, 'config.yaml'), `filter:\n  interfaces: [${IF}]\n  rules: ["deny icmp"]\n  default: allow\n`);
      const agent = `ip netns exec ${a.target} ${process.execPath} ${CLI} agent --config ${dir}/config.yaml --state-dir ${dir}/state --listen 127.0.0.1:0`;
      const refused = asPid1(`umount /sys/fs/bpf && ${agent}`);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(new RegExp(`^ebpfnet: pin the filter on ${IF}: this command runs in a mount namespace of its own \\(as under ip netns exec\\) and the host has no bpffs mounted;`));
      expect(xdpOn(IF, a.target)).toBe(false);

      // pid 1 reachable: the agent pins in the host's bpffs; killed with its whole pid namespace, the filter stays
      const p = spawn('unshare', ['--pid', '--fork', '--mount-proc', '--kill-child', 'sh', '-c', agent], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout!.on('data', (d: Buffer) => (out += d));
      p.stderr!.on('data', (d: Buffer) => (out += d));
      const exited = new Promise((r) => p.on('exit', r));
      for (const t0 = Date.now(); !/"msg":"ready"/.test(out); ) {
        if (p.exitCode !== null || Date.now() - t0 > 20_000) throw new Error(`agent did not start: ${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      p.kill('SIGKILL');
      await exited;
      expect(xdpOn(IF, a.target)).toBe(true);
      expect(ping(a)).toBe(false);
      expect(runCli(['status'], { ns: a.target }).stdout).toContain(`${IF}: xdp native: deny icmp; default allow`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lb attach under ip netns exec: refused where its pins would vanish, kept in the host\'s bpffs otherwise', () => {
    const pinRoot = `/sys/fs/bpf/ebpfnet-test-pins-${process.pid}`;
    const env = { ...process.env, EBPFNET_LB_PIN_DIR: `${pinRoot}/lb` };
    const cgName = `ebpfnet-pins-test-${process.pid}`;
    const cg = join(ensureCgroup2().path, cgName);
    mkdirSync(cg);
    try {
      const refused = asPid1(`umount /sys/fs/bpf && ip netns exec ${a.target} ${process.execPath} ${CLI} lb attach --cgroup ${cgName}`, env);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(/^ebpfnet: lb attach: this command runs in a mount namespace of its own \(as under ip netns exec\) and the host has no bpffs mounted;/);
      expect(sh('bpftool', ['cgroup', 'show', cg])).not.toContain('lb_');

      const kept = asPid1(`ip netns exec ${a.target} ${process.execPath} ${CLI} lb attach --cgroup ${cgName}`, env);
      expect(kept.status, kept.stderr).toBe(0);
      expect(kept.stdout).toMatch(new RegExp(`lb: attached 8 programs to /proc/1/root\\S*/${cgName}; pinned at /proc/1/root${pinRoot}/lb`));
      // after every process of that namespace exited: still attached, seen from the host
      expect(sh('bpftool', ['cgroup', 'show', cg])).toContain('lb_connect4');
      const d = runCli(['lb', 'detach'], { env });
      expect(d.status, d.stderr).toBe(0);
      expect(d.stdout).toContain(`lb: detached 8 programs from ${cg}`);
    } finally {
      if (existsSync(`${pinRoot}/lb`)) runCli(['lb', 'detach'], { env });
      rmSync(pinRoot, { recursive: true, force: true });
      rmdirSync(cg);
    }
  });
});
