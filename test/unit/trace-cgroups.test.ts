// SPDX-License-Identifier: Apache-2.0
// Container ids from cgroup names, --container matching, the cgroup name cache, and the table's
// CGROUP column appearing once events come from a second cgroup.
import { describe, expect, it } from 'vitest';
import * as G from '../../src/gen/trace.js';
import { CgroupNames, containerIdOf, findContainer, parseContainerId, type CgroupDir } from '../../src/trace/cgroups.js';
import { RecordReader, Renderer } from '../../src/trace/render.js';
import { traceRecord } from '../helpers/trace-records.js';

const A = 'a'.repeat(12) + '0'.repeat(52);
const B = 'a'.repeat(12) + '1'.repeat(52);

describe('trace: containers and cgroups', () => {
  it('reads the container id of the names runtimes give their cgroups', () => {
    expect(containerIdOf(`docker-${A}.scope`)).toBe(A);
    expect(containerIdOf(`cri-containerd-${A}.scope`)).toBe(A);
    expect(containerIdOf(`crio-${A}.scope`)).toBe(A);
    expect(containerIdOf(A)).toBe(A);
    expect(containerIdOf(`crio-conmon-${A}.scope`)).toBeNull();
    expect(containerIdOf(`docker-${A}`)).toBeNull();
    expect(containerIdOf('system.slice')).toBeNull();
  });

  it('resolves a unique prefix to the outermost cgroup carrying it; none and several are errors', () => {
    const dirs: CgroupDir[] = [
      { path: '/', id: 1 },
      { path: `/system.slice/docker-${A}.scope`, id: 10 },
      { path: `/system.slice/docker-${A}.scope/init`, id: 11 },
      { path: `/docker/${B}`, id: 20 },
      { path: `/docker/${B}/${B}`, id: 21 },
    ];
    expect(findContainer(dirs, A.slice(0, 13))).toEqual({ path: `/system.slice/docker-${A}.scope`, id: 10, container: A });
    expect(findContainer(dirs, B.slice(0, 13))).toMatchObject({ path: `/docker/${B}`, id: 20 });
    expect(() => findContainer(dirs, A.slice(0, 12))).toThrow(/matches 2 containers: .*; give more digits of the id/);
    expect(() => findContainer(dirs, 'b'.repeat(12))).toThrow(/no container cgroup matches 'bbbbbbbbbbbb'/);
    expect(() => parseContainerId('abc')).toThrow(/--container 'abc' is not a container id; give the id or a unique prefix of at least 12 hex digits/);
    expect(parseContainerId(A.toUpperCase())).toBe(A);
  });

  it('names cgroups from one walk, walks again for a new id, and not again within a second for an unknown one', () => {
    let walks = 0;
    let tree: CgroupDir[] = [{ path: '/', id: 1 }];
    let now = 0;
    const n = new CgroupNames('/cg', () => (walks++, tree), () => now);
    expect(n.name(1)).toBe('/');
    tree = [...tree, { path: '/new', id: 7 }];
    expect(n.name(7)).toBe('/new');
    expect(walks).toBe(2);
    expect(n.name(99)).toBeNull();
    expect(n.name(99)).toBeNull();
    expect(walks).toBe(3);
    now = 1500;
    expect(n.name(99)).toBeNull();
    expect(walks).toBe(4);
  });

  it('JSON carries via, ns_pid, cgroup_id and cgroup; the table grows a CGROUP column at the second cgroup', () => {
    const names = new Map([[1, '/'], [5, '/box']]);
    const json = new Renderer('json', { timestamps: false }, 0, 1 << 16, (id) => names.get(id) ?? null);
    const r = new RecordReader();
    const rec = (o: Parameters<typeof traceRecord>[0]) => G.TrEvent.encode(traceRecord(o));
    json.record(r.select(rec({ via: G.TR_VIA_IO_URING, ns_pid: 1, cgroup_id: 5n, syscall: G.TR_SYS_MKDIRAT }), 0));
    expect(JSON.parse(json.take().toString())).toMatchObject({ syscall: 'mkdirat', via: 'io_uring', pid: 4242, ns_pid: 1, cgroup_id: 5, cgroup: '/box' });
    json.record(r.select(rec({ flags: G.TR_F_NO_RESULT, via: G.TR_VIA_KERNEL }), 0));
    expect(JSON.parse(json.take().toString())).toMatchObject({ via: 'kernel', ret: null, result: 'unknown' });

    const table = new Renderer('table', { timestamps: false }, 0, 1 << 16, (id) => names.get(id) ?? null);
    table.record(r.select(rec({}), 0));
    table.record(r.select(rec({}), 0));
    expect(table.take().toString()).not.toMatch(/CGROUP/);
    table.record(r.select(rec({ cgroup_id: 5n, via: G.TR_VIA_IO_URING, syscall: G.TR_SYS_MKDIRAT }), 0));
    const lines = table.take().toString().trim().split('\n');
    expect(lines[0]).toMatch(/^PID\s+TID\s+UID\s+COMM\s+SYSCALL\s+MODE\s+RESULT\s+LAT\(us\) CGROUP\s+PATH$/);
    expect(lines[1]).toMatch(/^4242\s+4243\s+1000\s+mkdir\s+io_uring:mkdirat\s+0755\s+0\s+[\d.]+ \/box\s+\/tmp\/x$/);
  });
});
