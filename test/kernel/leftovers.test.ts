// SPDX-License-Identifier: Apache-2.0
// Nothing left behind: after `unload`, `lb detach` and `agent --cleanup`, the folders ebpfnet made
// in bpffs (/sys/fs/bpf/ebpfnet/...) and /run (/run/ebpfnet/...) are gone once nothing else is in
// them, lock files included; and two ebpfnet processes pinning and unloading side by side in one
// namespace (one folder for both) never fail on a folder the other pruned.
//
// Other runs on the machine may have their own things in these folders: a folder that still
// exists must then hold something; an empty one on two looks is a leftover.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { PIN_ROOT, RUN_ROOT, ensureCgroup2, packageDir } from '../../src/loader/index.js';
import { CliProcess, runCli } from '../helpers/cli.js';
import { describeKernel, sh } from '../helpers/kernel.js';
import { currentNetnsInode, makeVethPair, type VethPair } from '../helpers/netns.js';

const FILTER_PINS = `${PIN_ROOT}/filter`;
const FILTER_RECORDS = `${RUN_ROOT}/filter`;
/** this file's balancer, under ebpfnet's own bpffs folder so that its pruning is what is tested */
const LB_ROOT = `${PIN_ROOT}/test-leftovers-${process.pid}`;
const ENV = { ...process.env, EBPFNET_LB_PIN_DIR: `${LB_ROOT}/lb` };

const isEmptyDir = (d: string): boolean => {
  try {
    return readdirSync(d).length === 0;
  } catch {
    return false; // gone
  }
};

/** The folders of `dirs` that exist and are empty, on two looks 200 ms apart (a concurrent run's fresh mkdir is not one). */
function emptyLeftovers(dirs: string[]): string[] {
  const first = dirs.filter(isEmptyDir);
  if (!first.length) return [];
  spawnSync('sleep', ['0.2']);
  return first.filter(isEmptyDir);
}

const lockFiles = (): string[] => (existsSync(RUN_ROOT) ? readdirSync(RUN_ROOT).filter((f) => f.endsWith('.lock')) : []);

describeKernel('nothing left behind in bpffs and /run', () => {
  let v: VethPair;
  let netns: number;
  let cg = '';
  let dir = '';

  beforeAll(() => {
    v = makeVethPair();
    netns = currentNetnsInode();
    cg = join(ensureCgroup2().path, `ebpfnet-leftovers-${process.pid}`);
    mkdirSync(cg);
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-leftovers-'));
  });

  afterAll(() => {
    if (dir) runCli(['agent', '--cleanup', '--state-dir', join(dir, 'state')], { env: ENV });
    runCli(['unload', '--all']);
    if (existsSync(`${LB_ROOT}/lb`)) runCli(['lb', 'detach'], { env: ENV });
    rmSync(LB_ROOT, { recursive: true, force: true });
    for (const root of [FILTER_PINS, FILTER_RECORDS]) rmSync(join(root, String(netns)), { recursive: true, force: true });
    v?.cleanup();
    if (cg && existsSync(cg)) rmdirSync(cg);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const filterFolders = (): string[] => [join(FILTER_PINS, String(netns)), join(FILTER_RECORDS, String(netns))];

  it('unload removes the filter\'s folders and every ebpfnet folder it leaves empty', () => {
    const r = runCli(['filter', '--iface', v.host, '--deny', 'icmp', '--pin']);
    expect(r.status, r.stderr).toBe(0);
    for (const d of filterFolders()) expect(readdirSync(d).length, d).toBeGreaterThan(0);
    const u = runCli(['unload', '--iface', v.host]);
    expect(u.status, u.stderr).toBe(0);
    for (const d of filterFolders()) expect(existsSync(d), d).toBe(false);
    expect(emptyLeftovers([FILTER_PINS, FILTER_RECORDS, PIN_ROOT, RUN_ROOT])).toEqual([]);
  });

  it('lb detach removes its pin folders up to ebpfnet\'s and leaves no lock file', () => {
    const a = runCli(['lb', 'attach', '--cgroup', cg], { env: ENV });
    expect(a.status, a.stderr).toBe(0);
    expect(readdirSync(`${LB_ROOT}/lb/maps`).length).toBeGreaterThan(0);
    const d = runCli(['lb', 'detach'], { env: ENV });
    expect(d.status, d.stderr).toBe(0);
    expect(existsSync(LB_ROOT)).toBe(false);
    expect(lockFiles()).toEqual([]);
    expect(emptyLeftovers([PIN_ROOT, RUN_ROOT])).toEqual([]);
  });

  it('agent --cleanup removes the folders of the filter and balancer it ran', async () => {
    writeFileSync(join(dir, 'config.yaml'), `filter:\n  interfaces: [${v.host}]\n  rules: ["deny icmp"]\n  default: allow\nlb:\n  cgroup: ${cg}\n  services: []\n`);
    const agent = new CliProcess(['agent', '--config', join(dir, 'config.yaml'), '--state-dir', join(dir, 'state'), '--listen', '127.0.0.1:0'], { env: ENV });
    try {
      await agent.waitFor(/"msg":"ready"/);
    } finally {
      await agent.stop('SIGTERM');
    }
    for (const d of [...filterFolders(), `${LB_ROOT}/lb/links`]) expect(readdirSync(d).length, d).toBeGreaterThan(0);
    const c = runCli(['agent', '--cleanup', '--state-dir', join(dir, 'state')], { env: ENV });
    expect(c.status, c.stderr).toBe(0);
    for (const d of [...filterFolders(), LB_ROOT]) expect(existsSync(d), d).toBe(false);
    expect(lockFiles()).toEqual([]);
    expect(emptyLeftovers([FILTER_PINS, FILTER_RECORDS, PIN_ROOT, RUN_ROOT])).toEqual([]);
  });

  it('two processes pinning and unloading in one namespace at once never trip on each other\'s pruning', async () => {
    // a second veth pair with both ends here: two interfaces of this namespace, one folder for both
    const [x, y] = [`ebla${process.pid % 10000}`, `eblb${process.pid % 10000}`];
    sh('ip', ['link', 'add', x, 'type', 'veth', 'peer', 'name', y]);
    try {
      for (const i of [x, y]) sh('ip', ['link', 'set', i, 'up']);
      const churn = (iface: string): Promise<{ code: number | null; out: string }> =>
        new Promise((resolve) => {
          const p = spawn(process.execPath, [join(packageDir(), 'test', 'kernel', 'fixtures', 'pin-churn.mjs'), join(packageDir(), 'dist'), iface, '40'], { stdio: ['ignore', 'pipe', 'pipe'] });
          let out = '';
          p.stdout.on('data', (b: Buffer) => (out += b));
          p.stderr.on('data', (b: Buffer) => (out += b));
          p.on('close', (code) => resolve({ code, out }));
        });
      const results = await Promise.all([churn(x), churn(y)]);
      for (const r of results) {
        expect(r.out.trim()).toBe('{"cycles":40}');
        expect(r.code).toBe(0);
      }
      for (const d of filterFolders()) expect(existsSync(d), d).toBe(false);
      expect(emptyLeftovers([FILTER_PINS, FILTER_RECORDS, PIN_ROOT, RUN_ROOT])).toEqual([]);
    } finally {
      runCli(['unload', '--iface', x]);
      runCli(['unload', '--iface', y]);
      spawnSync('ip', ['link', 'del', x]);
    }
  }, 120_000);

  it('a folder with something not ours in it stays, with that thing', () => {
    // bpffs holds no regular files: a folder of someone else's is what can sit beside our pins
    const foreign = join(LB_ROOT, 'not-ours');
    mkdirSync(foreign, { recursive: true });
    try {
      const a = runCli(['lb', 'attach', '--cgroup', cg], { env: ENV });
      expect(a.status, a.stderr).toBe(0);
      const d = runCli(['lb', 'detach'], { env: ENV });
      expect(d.status, d.stderr).toBe(0);
      expect(existsSync(`${LB_ROOT}/lb`)).toBe(false);
      expect(statSync(foreign).isDirectory()).toBe(true);
    } finally {
      rmSync(LB_ROOT, { recursive: true, force: true });
    }
  });
});
