// SPDX-License-Identifier: Apache-2.0
// --iface lists, globs and all, the tunnel warning of status and doctor, and the agent filtering an
// interface made after it started. Everything runs in two namespaces the test makes (the lab's
// source and target), with extra veth pairs and a vxlan device created inside them; pings go from
// the source to the target's addresses only.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { CliProcess, runCli } from '../helpers/cli.js';
import { describeKernel, ok, sh, xdpOn } from '../helpers/kernel.js';
import { makeTwoHosts, type TwoHosts } from '../helpers/netns.js';

let seq = 0;

interface Link {
  /** the target's end */
  ifname: string;
  targetIp: string;
}

describeKernel('ebpfnet filter --iface forms, tunnel warnings, the agent following interfaces', () => {
  let h: TwoHosts;
  /** names that may have been pinned, unloaded after each test */
  let pinned: string[];
  let procs: CliProcess[];
  let dir: string | null;

  /** a second (third, ...) veth pair between source and target, `${targetIf}${suffix}` on the target */
  const link = (suffix: string): Link => {
    const n = (process.pid + ++seq * 17) % 250;
    const ifname = `${h.targetIf}${suffix}`;
    const src = `ebs${process.pid % 10000}z${seq}`;
    const l = { ifname, targetIp: `10.197.${n}.2` };
    sh('ip', ['link', 'add', src, 'netns', h.source, 'type', 'veth', 'peer', 'name', ifname, 'netns', h.target]);
    sh('ip', ['-n', h.source, 'addr', 'add', `10.197.${n}.1/24`, 'dev', src]);
    sh('ip', ['-n', h.target, 'addr', 'add', `${l.targetIp}/24`, 'dev', ifname]);
    sh('ip', ['-n', h.source, 'link', 'set', src, 'up']);
    sh('ip', ['-n', h.target, 'link', 'set', ifname, 'up']);
    return l;
  };
  /** a vxlan device on the target (this kernel has vxlan built in), with or without an address */
  const vxlan = (address: boolean): string => {
    const name = `ebx${process.pid % 10000}v${++seq}`;
    sh('ip', ['-n', h.target, 'link', 'add', name, 'type', 'vxlan', 'id', String(40 + seq), 'dstport', '4789', 'dev', h.targetIf]);
    if (address) sh('ip', ['-n', h.target, 'addr', 'add', `10.196.${(process.pid + seq) % 250}.2/24`, 'dev', name]);
    sh('ip', ['-n', h.target, 'link', 'set', name, 'up']);
    return name;
  };
  const ping = (ip: string, count = 1): boolean => ok('ping', ['-c', String(count), '-i', '0.2', '-W', '1', ip], h.source, 15_000);

  beforeEach(() => {
    h = makeTwoHosts();
    pinned = [];
    procs = [];
    dir = null;
  });
  afterEach(async () => {
    for (const p of procs) await p.stop('SIGKILL');
    if (dir) {
      runCli(['agent', '--cleanup', '--state-dir', join(dir, 'state')], { ns: h.target });
      rmSync(dir, { recursive: true, force: true });
    }
    for (const i of pinned) runCli(['unload', '--iface', i], { ns: h.target });
    h.cleanup();
  });

  it('a glob attaches to every interface it matches and each drops the denied packet; Ctrl-C detaches all', async () => {
    const b = link('b');
    expect(ping(h.targetIp)).toBe(true);
    expect(ping(b.targetIp)).toBe(true);
    const f = new CliProcess(['filter', '--iface', `${h.targetIf}*`, '--deny', 'icmp'], { ns: h.target });
    procs.push(f);
    await f.waitFor(/filtering/);
    expect(f.stdout).toContain(`interfaces: ${h.targetIf}* -> ${h.targetIf}, ${b.ifname}\n`);
    expect(f.stdout).toContain(`${h.targetIf}: xdp native: deny icmp; default allow\n`);
    expect(f.stdout).toContain(`${b.ifname}: xdp native: deny icmp; default allow\n`);
    expect(ping(h.targetIp, 2)).toBe(false);
    expect(ping(b.targetIp, 3)).toBe(false);
    expect(await f.stop('SIGINT')).toBe(0);
    // the totals count each interface's own drops
    expect(f.stdout).toMatch(new RegExp(`${h.targetIf}\\s+deny icmp\\s+2 packets`));
    expect(f.stdout).toMatch(new RegExp(`${b.ifname}\\s+deny icmp\\s+3 packets`));
    expect(xdpOn(h.targetIf, h.target)).toBe(false);
    expect(xdpOn(b.ifname, h.target)).toBe(false);
    expect(ping(h.targetIp)).toBe(true);
    expect(ping(b.targetIp)).toBe(true);
  });

  it('a list whose third interface cannot take the filter leaves nothing attached on the first two', () => {
    const b = link('b');
    // vxlan has no native XDP: the third attach fails after two succeeded
    const vx = vxlan(false);
    pinned.push(h.targetIf, b.ifname, vx);
    const r = runCli(['filter', '--iface', `${h.targetIf},${b.ifname}`, '--iface', vx, '--mode', 'native', '--deny', 'icmp', '--pin'], { ns: h.target });
    expect(r.status, r.stdout + r.stderr).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(vx);
    for (const i of [h.targetIf, b.ifname, vx]) expect(xdpOn(i, h.target), i).toBe(false);
    expect(runCli(['status'], { ns: h.target }).stdout).not.toMatch(new RegExp(`^${h.targetIf}`, 'm'));
    expect(ping(h.targetIp)).toBe(true);
    expect(ping(b.targetIp)).toBe(true);
  });

  it('all covers every interface with an address but lo (tunnels too); a glob naming nothing is exit 2 and attaches nothing', async () => {
    const b = link('b');
    const vx = vxlan(true);
    const bare = vxlan(false);
    const none = runCli(['filter', '--iface', `${h.targetIf},nomatch*`, '--deny', 'icmp'], { ns: h.target });
    expect(none.status).toBe(2);
    expect(none.stderr).toBe(`ebpfnet: filter: 'nomatch*' matches no interface; interfaces here: lo, ${h.targetIf}, ${b.ifname}, ${vx}, ${bare}; nothing was attached\n`);
    expect(xdpOn(h.targetIf, h.target)).toBe(false);

    const f = new CliProcess(['filter', '--iface', 'all', '--deny', 'icmp'], { ns: h.target });
    procs.push(f);
    await f.waitFor(/filtering/);
    expect(f.stdout).toContain(`interfaces: all -> ${h.targetIf}, ${b.ifname}, ${vx}\n`);
    // vxlan has no native XDP: auto mode takes generic there
    expect(f.stdout).toContain(`${vx}: xdp generic: deny icmp`);
    for (const i of [h.targetIf, b.ifname, vx]) expect(xdpOn(i, h.target), i).toBe(true);
    expect(xdpOn('lo', h.target)).toBe(false);
    expect(xdpOn(bare, h.target)).toBe(false);
    expect(ping(h.targetIp)).toBe(false);
    expect(ping(b.targetIp)).toBe(false);
    expect(await f.stop()).toBe(0);
    for (const i of [h.targetIf, b.ifname, vx]) expect(xdpOn(i, h.target), i).toBe(false);
  });

  it('status and doctor warn about a tunnel device without a filter, and stop once one covers it', () => {
    const vx = vxlan(false);
    const line = `warning: tunnel ${vx} (vxlan) has no ebpfnet filter: packets decapsulated there are not filtered, whatever the underlay's filter says; cover it with --iface ${vx}`;
    pinned.push(h.targetIf, vx);
    // the underlay's filter does not cover the tunnel
    expect(runCli(['filter', '--iface', h.targetIf, '--deny', 'tcp/22', '--pin'], { ns: h.target }).status).toBe(0);
    // (not its exit status: that also says whether every pin on the machine opened, and other
    // processes' pins are none of this test's business)
    const st = runCli(['status'], { ns: h.target });
    expect(st.stdout.split('\n'), st.stderr).toContain(line);
    const doc = runCli(['doctor'], { ns: h.target });
    expect(doc.status, doc.stdout + doc.stderr).toBe(0);
    expect(doc.stdout.split('\n')).toContain(line);
    const json = JSON.parse(runCli(['doctor', '--json'], { ns: h.target }).stdout) as { tunnels: string[] };
    expect(json.tunnels).toEqual([line]);
    // the source namespace has no tunnel: nothing to say there
    expect(runCli(['status'], { ns: h.source }).stdout).not.toContain('warning: tunnel');

    const cover = runCli(['filter', '--iface', vx, '--hook', 'tc', '--deny', 'tcp/22', '--pin'], { ns: h.target });
    expect(cover.status, cover.stderr).toBe(0);
    expect(runCli(['status'], { ns: h.target }).stdout).not.toContain('warning: tunnel');
    expect(runCli(['doctor'], { ns: h.target }).stdout).not.toContain('warning: tunnel');
  });

  it('the agent filters an interface that appears after it started and drops one that goes', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-ifaces-k-'));
    const cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, `filter:\n  interfaces: ['${h.targetIf}*']\n  rules: ['deny icmp']\n`);
    const a = new CliProcess(['agent', '--config', cfg, '--state-dir', join(dir, 'state'), '--listen', '127.0.0.1:0'], { ns: h.target });
    procs.push(a);
    await a.waitFor(/"msg":"ready"/);
    expect(a.stdout).toContain(`filter: ${h.targetIf}* -> ${h.targetIf}: 1 rules; default allow`);
    expect(ping(h.targetIp)).toBe(false);

    const c = link('c');
    pinned.push(h.targetIf, c.ifname);
    await a.waitFor(new RegExp(`"op":"interface added","what":"filter on ${c.ifname} \\(matches ${h.targetIf}\\*\\)"`));
    expect(xdpOn(c.ifname, h.target)).toBe(true);
    expect(ping(c.targetIp, 2)).toBe(false);
    // status through the agent lists the new interface with its own counts
    const port = /api: http:\/\/127\.0\.0\.1:(\d+)/.exec(a.stdout)![1];
    const token = readFileSync(join(dir, 'state', 'token'), 'utf8').trim();
    const st = runCli(['status', '--agent', `http://127.0.0.1:${port}`, '--token', token], { ns: h.target });
    expect(st.status, st.stderr).toBe(0);
    expect(st.stdout).toContain(`${c.ifname} (xdp native, stateless)`);
    expect(st.stdout).toMatch(new RegExp(`${c.ifname}\\s+#1\\s+deny icmp\\s+2\\b`));

    sh('ip', ['-n', h.target, 'link', 'del', c.ifname]);
    await a.waitFor(new RegExp(`"op":"interface gone","what":"filter on ${c.ifname} dropped"`));
    expect(runCli(['status'], { ns: h.target }).stdout).not.toMatch(new RegExp(`^${c.ifname}:`, 'm'));
    expect(a.stderr).toBe('');
    // the agent's interface monitor dies with it, even on kill -9 (nothing else would end it in a
    // namespace where no link changes any more)
    const pid = a.child.pid!;
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    const monitor = kids.find((k) => readFileSync(`/proc/${k}/cmdline`, 'utf8').split('\0').join(' ').includes('ip -o monitor link address'));
    expect(monitor).toBeDefined();
    await a.stop('SIGKILL');
    const t0 = Date.now();
    while (existsSync(`/proc/${monitor}`) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(`/proc/${monitor}`)).toBe(false);
    // the filter stays pinned after the agent, and --cleanup removes what the agent attached
    expect(xdpOn(h.targetIf, h.target)).toBe(true);
    const clean = runCli(['agent', '--cleanup', '--state-dir', join(dir, 'state')], { ns: h.target });
    expect(clean.stdout).toBe(`filter on ${h.targetIf}: detached and unpinned\n`);
    expect(xdpOn(h.targetIf, h.target)).toBe(false);
  });
});
