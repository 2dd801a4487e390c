// SPDX-License-Identifier: Apache-2.0
// What a user installs: `npm pack`, installed into an empty folder, run with no clang or bpftool on
// the PATH. doctor must pass and verify must load the shipped objects.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { packageDir } from '../../src/loader/paths.js';
import { describeKernel } from '../helpers/kernel.js';

describeKernel('the npm package', () => {
  let dir: string;
  let bin: string;
  let ebpfnet: string;
  let files: string[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ebpfnet-pack-'));
    const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: packageDir(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as Array<{ filename: string; files: Array<{ path: string }> }>;
    files = packed[0].files.map((f) => f.path);
    const app = join(dir, 'app');
    mkdirSync(app);
    execFileSync('npm', ['init', '-y'], { cwd: app, stdio: 'ignore' });
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--omit=dev', join(dir, packed[0].filename)], { cwd: app, stdio: 'ignore', timeout: 180_000 });
    ebpfnet = join(app, 'node_modules', '.bin', 'ebpfnet');
    // A PATH with node and the basics but without clang, llvm or bpftool.
    bin = join(dir, 'bin');
    mkdirSync(bin);
    for (const [name, target] of [['node', process.execPath], ['sh', '/bin/sh'], ['mount', '/bin/mount']]) symlinkSync(target, join(bin, name));
  }, 240_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('ships compiled JavaScript, the compiled BPF objects and no sources or tests', () => {
    expect(files).toContain('dist/cli/main.js');
    expect(files).toContain('build/bpf/selftest.bpf.o');
    expect(files.some((f) => f.startsWith('bpf/baseline/'))).toBe(true);
    // the tracer's JSON schema is the one file of src/ users need: -o json is documented by it
    expect(files).toContain('src/trace/event.schema.json');
    // the README points users at these two in the installed package
    expect(files).toContain('tools/agent/ebpfnet-agent.service');
    expect(files).toContain('tools/grafana/ebpfnet-dashboard.json');
    expect(files.filter((f) => (f.startsWith('src/') && !f.endsWith('.schema.json')) || f.startsWith('test/') || f.endsWith('.bpf.c'))).toEqual([]);
  });

  it('doctor passes without clang or bpftool', () => {
    const r = spawnSync(ebpfnet, ['doctor'], { encoding: 'utf8', env: { ...process.env, PATH: bin } });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^clang\s+-\s+not installed/m);
    expect(r.stdout).toMatch(/^bpftool\s+-\s+not installed/m);
  });

  it('the shipped objects load into the kernel', () => {
    const r = spawnSync(ebpfnet, ['verify', '--json'], { encoding: 'utf8', env: { ...process.env, PATH: bin } });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { rows: Array<{ program: string; type: string; verdict: string }> };
    expect(j.rows.length).toBeGreaterThan(0);
    // an lsm program is 'refused' exactly where the packaged doctor says the kernel refuses them
    const d = spawnSync(ebpfnet, ['doctor', '-o', 'json'], { encoding: 'utf8', env: { ...process.env, PATH: bin } });
    const lsmRefused = (JSON.parse(d.stdout) as { checks: Array<{ name: string; detail: string }> }).checks.find((c) => c.name === 'BPF LSM')!.detail.includes('refuses lsm programs');
    for (const x of j.rows) expect(x.verdict, x.program).toBe(x.type === 'lsm' && lsmRefused ? 'refused' : 'ok');
  });
});
