// SPDX-License-Identifier: Apache-2.0
// The two-host lab in network namespaces: `source` and `target` joined by a veth pair, an SSH server
// (Debian's sshd, with a config, host key and authorized key of its own) and an HTTP server on the
// target. Everything `up` makes is recorded in the state dir as it is made, so `down` can remove it
// after a crash too: processes by recorded PID (and whatever else runs in our namespaces), the
// namespaces (which take the veth and any XDP program on it along), the lab's cgroup and its pins.
import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EbpfnetError } from '../errors.js';
import { PIN_ROOT, RUN_ROOT, findCgroup2, processAlive } from '../loader/system.js';
import { pruneEmptyDirs, withDir } from '../loader/dirs.js';
import { ensureBpffs, ensureCgroup2 } from '../loader/pinfs.js';
import { packageDir } from '../loader/paths.js';

/** The addresses match vagrant/Vagrantfile, so the two labs read the same. */
export const LAB = {
  hosts: ['source', 'target'] as const,
  /** prefixed so they cannot collide with a user's own namespaces */
  netns: { source: 'ebpfnet-source', target: 'ebpfnet-target' },
  /** the same name in both namespaces (interface names are per namespace), as on the VMs */
  ifname: 'eth1',
  ip: { source: '192.168.56.10', target: '192.168.56.11' },
  prefixLen: 24,
  sshPort: 22,
  httpPort: 80,
  metricsPort: 9100,
  /** two HTTP backends on the target for the load-balancing step */
  backends: [
    { name: 'backend-a', port: 8081 },
    { name: 'backend-b', port: 8082 },
  ],
  vip: '10.96.0.10:80/tcp',
  cgroupName: 'ebpfnet-lab',
} as const;

export type Host = (typeof LAB.hosts)[number];

export const labDir = (): string => process.env.EBPFNET_LAB_DIR ?? `${RUN_ROOT}/lab`;
/** the lab's own balancer pins, apart from a user's balancer at /sys/fs/bpf/ebpfnet/lb */
export const labPinRoot = (): string => `${PIN_ROOT}/lab`;
export const labLbPinDir = (): string => join(labPinRoot(), 'lb');
export const sshConfigPath = (): string => join(labDir(), 'ssh_config');
export const cliPath = (): string => join(packageDir(), 'dist', 'cli', 'main.js');

export interface LabState {
  /** what has been made so far, in order; down() reverses it */
  netns: string[];
  pids: Array<{ name: string; pid: number; marker: string }>;
  cgroup: string | null;
  /** true when up created /run/sshd (sshd's privilege-separation directory) */
  madeSshdRunDir: boolean;
  created: string;
}

const statePath = (): string => join(labDir(), 'state.json');

export function readState(): LabState | null {
  try {
    return JSON.parse(readFileSync(statePath(), 'utf8')) as LabState;
  } catch {
    return null;
  }
}

function saveState(s: LabState): void {
  writeFileSync(statePath(), `${JSON.stringify(s, null, 2)}\n`);
}

function run(cmd: string, args: string[], op: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = String((e as { stderr?: string }).stderr ?? (e as Error).message).trim();
    throw new EbpfnetError('EBPFNET_KERNEL', op, `${cmd} ${args.join(' ')} failed: ${err}`, { cause: e });
  }
}

export const netnsExists = (name: string): boolean => existsSync(`/run/netns/${name}`);

/** argv that runs `argv` inside a lab host's network namespace; only the network namespace is
 * switched (`ip netns exec` would remount /sys and hide the host's bpffs, where pins live) */
export const inHost = (host: Host, argv: string[]): string[] => ['nsenter', `--net=/run/netns/${LAB.netns[host]}`, ...argv];


/** The PID still belongs to the process we started (PIDs are reused after a crash or reboot). */
const ours = (pid: number, marker: string): boolean => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return false;
  }
};

async function waitFor(what: string, test: () => boolean, ms: number, log?: string): Promise<void> {
  const t0 = Date.now();
  while (!test()) {
    if (Date.now() - t0 > ms) {
      const tail = log && existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-5).join(' | ') : '';
      throw new EbpfnetError('EBPFNET_KERNEL', 'lab up', `${what} did not start within ${ms / 1000} s${tail ? `: ${tail}` : ''}`, { hint: 'see the logs in ' + labDir() });
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts a server in the background, in a lab host, logging to the state dir; records its PID. */
function startServer(state: LabState, name: string, host: Host, argv: string[], marker: string): string {
  const log = join(labDir(), `${name}.log`);
  const fd = openSync(log, 'w');
  const [cmd, ...args] = inHost(host, argv);
  // detached: its own process group, so a Ctrl-C meant for the demo does not kill it before
  // down() does (down kills it by PID either way)
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  child.unref();
  if (child.pid === undefined) throw new EbpfnetError('EBPFNET_KERNEL', 'lab up', `could not start ${name}`);
  state.pids.push({ name, pid: child.pid, marker });
  saveState(state);
  return log;
}

function writeSshFiles(): void {
  const d = labDir();
  const key = join(d, 'ssh_host_ed25519_key');
  const client = join(d, 'id_ed25519');
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'ebpfnet-lab-host', '-f', key], 'lab up: host key');
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'ebpfnet-lab-client', '-f', client], 'lab up: client key');
  writeFileSync(join(d, 'authorized_keys'), readFileSync(`${client}.pub`));
  writeFileSync(join(d, 'known_hosts'), `${LAB.ip.target} ${readFileSync(`${key}.pub`, 'utf8')}`);
  writeFileSync(
    join(d, 'sshd_config'),
    [
      '# ebpfnet lab: an sshd of its own inside the target namespace; nothing here touches the host\'s sshd',
      `ListenAddress ${LAB.ip.target}:${LAB.sshPort}`,
      `HostKey ${key}`,
      `PidFile ${join(d, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(d, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      // no PAM: the lab logs in with its own key only, and PAM's session modules (loginuid, motd)
      // fail or print noise in namespaces and containers
      'UsePAM no',
      // the keys live in a root-only state dir, not in a home directory StrictModes would check
      'StrictModes no',
      'PrintMotd no',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  writeFileSync(
    sshConfigPath(),
    [
      '# ebpfnet lab: ssh -F ' + sshConfigPath() + ' target',
      'Host target',
      `  HostName ${LAB.ip.target}`,
      `  Port ${LAB.sshPort}`,
      '  User root',
      `  IdentityFile ${client}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${join(d, 'known_hosts')}`,
      '  StrictHostKeyChecking yes',
      '  BatchMode yes',
      // short, so a filtered SSH fails in seconds rather than after the default two minutes
      '  ConnectTimeout 3',
      '  LogLevel ERROR',
      '',
    ].join('\n'),
  );
}

const sshdListening = (log: string): boolean => existsSync(log) && /Server listening on/.test(readFileSync(log, 'utf8'));
const httpReady = (log: string): boolean => existsSync(log) && /^ready/m.test(readFileSync(log, 'utf8'));

export interface UpResult {
  state: LabState;
  mounted: string[];
}

/** Builds the lab. Refuses when any part of a lab is already there; a failure part-way removes
 * what was made. */
export async function up(): Promise<UpResult> {
  if (readState() || Object.values(LAB.netns).some(netnsExists)) {
    throw new EbpfnetError('EBPFNET_EXISTS', 'lab up', 'the lab is already up (or a crashed one was left behind)', { hint: 'take it down first: ebpfnet lab down' });
  }
  for (const tool of ['ip', 'nsenter', '/usr/sbin/sshd', 'ssh', 'ssh-keygen', 'ping']) {
    const found = tool.startsWith('/') ? existsSync(tool) : spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
    if (!found) {
      throw new EbpfnetError('EBPFNET_NOT_FOUND', 'lab up', `${tool} is missing`, { hint: 'install iproute2, util-linux, openssh-server, openssh-client and iputils-ping (tools/bootstrap.sh does)' });
    }
  }
  const mounted = [ensureBpffs(), ensureCgroup2()].filter((m) => m.mounted).map((m) => `${m.what} at ${m.path}`);
  const state: LabState = { netns: [], pids: [], cgroup: null, madeSshdRunDir: false, created: new Date().toISOString() };
  // the state file is the folder's first entry (a concurrent unload may prune /run/ebpfnet until then)
  withDir(labDir(), () => saveState(state), 0o700);
  chmodSync(labDir(), 0o700);
  try {
    for (const h of LAB.hosts) {
      run('ip', ['netns', 'add', LAB.netns[h]], 'lab up');
      state.netns.push(LAB.netns[h]);
      saveState(state);
    }
    // Created straight into the namespaces: the root namespace never sees the pair, so the same
    // name on both ends (eth1, like the VMs) cannot clash with a host interface.
    run('ip', ['-n', LAB.netns.source, 'link', 'add', LAB.ifname, 'type', 'veth', 'peer', 'name', LAB.ifname, 'netns', LAB.netns.target], 'lab up');
    for (const h of LAB.hosts) {
      const ns = LAB.netns[h];
      run('ip', ['-n', ns, 'addr', 'add', `${LAB.ip[h]}/${LAB.prefixLen}`, 'dev', LAB.ifname], 'lab up');
      run('ip', ['-n', ns, 'link', 'set', LAB.ifname, 'up'], 'lab up');
      run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'], 'lab up');
    }
    const cg = join(ensureCgroup2().path, LAB.cgroupName);
    mkdirSync(cg, { recursive: true });
    state.cgroup = cg;
    saveState(state);

    writeSshFiles();
    if (!existsSync('/run/sshd')) {
      // sshd refuses to start without its privilege-separation directory; the host's sshd
      // service makes it at boot, a machine without that service does not
      mkdirSync('/run/sshd', { mode: 0o755 });
      state.madeSshdRunDir = true;
      saveState(state);
    }
    const sshdConfig = join(labDir(), 'sshd_config');
    const sshLog = startServer(state, 'sshd', 'target', ['/usr/sbin/sshd', '-D', '-e', '-f', sshdConfig], sshdConfig);
    const serverJs = join(packageDir(), 'dist', 'lab', 'http.js');
    const listen = [
      { host: LAB.ip.target, port: LAB.httpPort, name: 'target' },
      ...LAB.backends.map((b) => ({ host: LAB.ip.target, port: b.port, name: b.name })),
    ];
    const httpLog = startServer(state, 'http', 'target', [process.execPath, serverJs, 'serve', JSON.stringify(listen)], serverJs);
    await waitFor('sshd', () => sshdListening(sshLog), 10_000, sshLog);
    await waitFor('the HTTP server', () => httpReady(httpLog), 10_000, httpLog);
  } catch (e) {
    down();
    throw e;
  }
  return { state, mounted };
}

export interface DownResult {
  removed: string[];
  errors: string[];
}

/** Removes everything a lab left, whether up finished, failed or crashed; safe to call twice. */
export function down(): DownResult {
  const removed: string[] = [];
  const errors: string[] = [];
  const state = readState();
  // 1. processes: the recorded ones, then anything still running in our namespaces (a filter or
  //    tracer the demo started, a shell from `lab exec`)
  const victims = new Map<number, string>();
  for (const p of state?.pids ?? []) if (processAlive(p.pid) && ours(p.pid, p.marker)) victims.set(p.pid, p.name);
  for (const ns of Object.values(LAB.netns)) {
    if (!netnsExists(ns)) continue;
    const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
    for (const line of (r.stdout ?? '').split('\n')) if (/^\d+$/.test(line.trim())) victims.set(Number(line.trim()), victims.get(Number(line.trim())) ?? `pid in ${ns}`);
  }
  for (const [pid] of victims) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* exited meanwhile */
    }
  }
  const t0 = Date.now();
  // a filter or tracer detaches on SIGTERM; give them a moment before SIGKILL
  while ([...victims.keys()].some(processAlive) && Date.now() - t0 < 3000) spawnSync('sleep', ['0.05']);
  for (const [pid, name] of victims) {
    if (processAlive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    removed.push(`process ${name} (pid ${pid})`);
  }
  // 2. the lab's balancer: its programs are pinned, so they outlive every process
  if (existsSync(labLbPinDir())) {
    const r = spawnSync(process.execPath, [cliPath(), 'lb', 'detach'], { encoding: 'utf8', env: { ...process.env, EBPFNET_LB_PIN_DIR: labLbPinDir() } });
    if (r.status === 0) removed.push(`balancer pinned at ${labLbPinDir()}`);
    else errors.push(`lab down: lb detach failed: ${(r.stderr || r.stdout).trim()}`);
  }
  if (existsSync(labPinRoot())) {
    try {
      rmSync(labPinRoot(), { recursive: true, force: true });
    } catch (e) {
      errors.push(`lab down: remove ${labPinRoot()}: ${(e as Error).message}`);
    }
  }
  // 3. namespaces: deleting one destroys its end of the veth pair (and the pair with it), with
  //    whatever XDP program was attached there
  for (const ns of Object.values(LAB.netns)) {
    if (!netnsExists(ns)) continue;
    const r = spawnSync('ip', ['netns', 'del', ns], { encoding: 'utf8' });
    if (r.status === 0) removed.push(`network namespace ${ns}`);
    else errors.push(`lab down: ip netns del ${ns}: ${r.stderr.trim()}`);
  }
  // 4. the cgroup (empty now that its processes are gone)
  const cg = state?.cgroup ?? (findCgroup2() ? join(findCgroup2()!, LAB.cgroupName) : null);
  if (cg && existsSync(cg)) {
    try {
      rmdirCgroup(cg);
      removed.push(`cgroup ${cg}`);
    } catch (e) {
      errors.push(`lab down: rmdir ${cg}: ${(e as Error).message}`);
    }
  }
  if (state?.madeSshdRunDir && existsSync('/run/sshd') && readdirSync('/run/sshd').length === 0) rmdirSync('/run/sshd');
  if (existsSync(labDir())) {
    rmSync(labDir(), { recursive: true, force: true });
    removed.push(`state ${labDir()}`);
  }
  // ebpfnet's own folders, when the lab was the last thing in them
  pruneEmptyDirs(PIN_ROOT);
  pruneEmptyDirs(RUN_ROOT);
  return { removed, errors };
}

/** A cgroup whose last process just exited can stay busy for a moment. */
function rmdirCgroup(cg: string): void {
  for (let i = 0; ; i++) {
    try {
      rmdirSync(cg);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EBUSY' || i > 40) throw e;
      spawnSync('sleep', ['0.05']);
    }
  }
}

export interface LabStatus {
  up: boolean;
  netns: Record<string, boolean>;
  processes: Array<{ name: string; pid: number; running: boolean }>;
  cgroup: string | null;
  balancer: boolean;
  stateDir: string | null;
}

export function status(): LabStatus {
  const state = readState();
  const netns = Object.fromEntries(Object.values(LAB.netns).map((n) => [n, netnsExists(n)]));
  const processes = (state?.pids ?? []).map((p) => ({ name: p.name, pid: p.pid, running: processAlive(p.pid) && ours(p.pid, p.marker) }));
  return {
    up: !!state && Object.values(netns).every(Boolean) && processes.length > 0 && processes.every((p) => p.running),
    netns,
    processes,
    cgroup: state?.cgroup && existsSync(state.cgroup) ? state.cgroup : null,
    balancer: existsSync(labLbPinDir()),
    stateDir: state ? labDir() : null,
  };
}

/**
 * argv for a command inside a lab host, in the lab's cgroup: a balancer attached to that cgroup
 * (the demo's, or one a user attaches with --cgroup) translates the command's connections.
 */
export function execArgv(host: Host, argv: string[]): { cmd: string; args: string[] } {
  const state = readState();
  if (!state || !netnsExists(LAB.netns[host])) {
    throw new EbpfnetError('EBPFNET_NOT_FOUND', `lab exec ${host}`, 'the lab is not up', { hint: 'start it with: ebpfnet lab up' });
  }
  const inner = inHost(host, argv);
  if (!state.cgroup || !existsSync(state.cgroup)) return { cmd: inner[0], args: inner.slice(1) };
  // the shell joins the cgroup and then becomes the command, so the command itself is in it
  return { cmd: 'sh', args: ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', state.cgroup, ...inner] };
}

export type ExecResult = SpawnSyncReturns<string>;

/** Runs a command in a lab host to completion (the demo's ping, ssh and HTTP requests). */
export function execIn(host: Host, argv: string[], timeoutMs = 15_000): ExecResult {
  const { cmd, args } = execArgv(host, argv);
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
}
