// SPDX-License-Identifier: Apache-2.0
// `ebpfnet kubernetes manifests`: the printed YAML parses, every document validates against the
// Kubernetes schemas (kubernetes-models) and names no field the API does not know (the official
// client's models), the ClusterRole grants exactly what the agent uses, and the DaemonSet holds
// together (probes on the port the config listens on, the config where --config reads it...).
import * as k8s from '@kubernetes/client-node';
import type { V1ClusterRole, V1ClusterRoleBinding, V1ConfigMap, V1DaemonSet, V1ServiceAccount } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { ClusterRole, ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/agent/config.js';
import { checkNamespace, parseApiServer } from '../../src/cli/kubernetes.js';
import { buildProgram } from '../../src/cli/program.js';
import { EbpfnetError } from '../../src/errors.js';
import { CONFIG_FILE, manifests, manifestsYaml, type ManifestOptions } from '../../src/k8s/manifests.js';
import { AGENT_PERMISSIONS } from '../../src/k8s/permissions.js';

const OPTS: ManifestOptions = { image: 'registry.example.com/ebpfnet:1.2.3', namespace: 'ebpfnet-system' };

const VALIDATORS: Record<string, new (d: never) => { validate(): void }> = {
  ServiceAccount: ServiceAccount as never,
  ClusterRole: ClusterRole as never,
  ClusterRoleBinding: ClusterRoleBinding as never,
  ConfigMap: ConfigMap as never,
  DaemonSet: DaemonSet as never,
};

interface Docs {
  sa: V1ServiceAccount;
  role: V1ClusterRole;
  binding: V1ClusterRoleBinding;
  config: V1ConfigMap;
  ds: V1DaemonSet;
}

function parse(text: string): Record<string, unknown>[] {
  const docs = parseAllDocuments(text);
  expect(Array.isArray(docs)).toBe(true);
  return (docs as ReturnType<typeof parseAllDocuments> & unknown[]).map((d) => {
    expect(d.errors).toEqual([]);
    expect(d.warnings).toEqual([]);
    return d.toJS() as Record<string, unknown>;
  });
}

function byKind(docs: Record<string, unknown>[]): Docs {
  const get = <T>(kind: string): T => {
    const all = docs.filter((d) => d.kind === kind);
    expect(all, kind).toHaveLength(1);
    return all[0] as T;
  };
  return { sa: get('ServiceAccount'), role: get('ClusterRole'), binding: get('ClusterRoleBinding'), config: get('ConfigMap'), ds: get('DaemonSet') };
}

type Model = { getAttributeTypeMap(): Array<{ baseName: string; type: string }> };
const models = k8s as unknown as Record<string, Model | undefined>;
const MODEL_OF_KIND: Record<string, string> = { ServiceAccount: 'V1ServiceAccount', ClusterRole: 'V1ClusterRole', ClusterRoleBinding: 'V1ClusterRoleBinding', ConfigMap: 'V1ConfigMap', DaemonSet: 'V1DaemonSet' };

/** Paths of fields the API does not define, walking the client's model of each type. */
function unknownFields(v: unknown, type: string, path = ''): string[] {
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr) return Array.isArray(v) ? v.flatMap((x, i) => unknownFields(x, arr[1], `${path}[${i}]`)) : [`${path} (not a list)`];
  if (type.startsWith('{ [key: string]:')) return [];
  const model = models[type];
  if (!model?.getAttributeTypeMap) return [];
  if (typeof v !== 'object' || v === null) return [`${path} (not an object)`];
  const attrs = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  return Object.entries(v).flatMap(([key, x]) => (attrs.has(key) ? unknownFields(x, attrs.get(key)!, `${path}.${key}`) : [`${path}.${key}`]));
}

const container = (ds: V1DaemonSet): k8s.V1Container => ds.spec!.template.spec!.containers[0];
const pod = (ds: V1DaemonSet): k8s.V1PodSpec => ds.spec!.template.spec!;

describe('kubernetes manifests: schemas', () => {
  const text = manifestsYaml(OPTS, ' header');
  const docs = parse(text);

  it('five documents, each valid against the Kubernetes schemas', () => {
    expect(docs.map((d) => d.kind)).toEqual(['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet']);
    for (const d of docs) {
      const V = VALIDATORS[d.kind as string];
      expect(() => new V(d as never).validate(), d.kind as string).not.toThrow();
    }
  });

  it('no field the API does not know (kubectl apply --validate=strict would refuse it)', () => {
    for (const d of docs) expect(unknownFields(d, MODEL_OF_KIND[d.kind as string]), d.kind as string).toEqual([]);
  });

  it('the two checks can fail: a wrong type and a misspelled field are caught', () => {
    const ds = structuredClone(byKind(docs).ds) as unknown as { spec: { template: { spec: Record<string, unknown> } } };
    ds.spec.template.spec.hostNetwork = 'yes';
    expect(() => new DaemonSet(ds as never).validate()).toThrow(/hostNetwork must be boolean/);
    const typo = structuredClone(byKind(docs).ds) as unknown as { spec: { template: { spec: Record<string, unknown> } } };
    typo.spec.template.spec.hostNetwrk = true;
    expect(unknownFields(typo, 'V1DaemonSet')).toEqual(['.spec.template.spec.hostNetwrk']);
  });

  it('the JSON form is a v1 List of the same objects', () => {
    const list = { apiVersion: 'v1', kind: 'List', items: manifests(OPTS).map((m) => m.object) };
    expect(JSON.parse(JSON.stringify(list)).items).toEqual(docs);
  });
});

describe('kubernetes manifests: permissions', () => {
  const d = byKind(parse(manifestsYaml(OPTS)));

  it('the ClusterRole grants exactly AGENT_PERMISSIONS: get, list, watch on services, endpointslices, nodes', () => {
    const granted = d.role.rules!.flatMap((r) => r.apiGroups!.flatMap((g) => r.resources!.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}`)))).sort();
    const used = AGENT_PERMISSIONS.flatMap((p) => p.verbs.map((v) => `${p.apiGroup}/${p.resource}:${v}`)).sort();
    expect(granted).toEqual(used);
    expect(granted).toEqual(['/nodes:get', '/nodes:list', '/nodes:watch', '/services:get', '/services:list', '/services:watch', 'discovery.k8s.io/endpointslices:get', 'discovery.k8s.io/endpointslices:list', 'discovery.k8s.io/endpointslices:watch']);
    for (const r of d.role.rules!) {
      expect(r.resourceNames ?? [], 'no resource names').toEqual([]);
      expect(r.nonResourceURLs ?? []).toEqual([]);
    }
  });

  it('the binding gives that role to the agent service account, in the chosen namespace', () => {
    expect(d.binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: d.role.metadata!.name });
    expect(d.binding.subjects).toEqual([{ kind: 'ServiceAccount', name: d.sa.metadata!.name, namespace: 'ebpfnet-system' }]);
    expect(pod(d.ds).serviceAccountName).toBe(d.sa.metadata!.name);
    for (const x of [d.sa, d.config, d.ds]) expect(x.metadata!.namespace).toBe('ebpfnet-system');
  });
});

describe('kubernetes manifests: the DaemonSet', () => {
  const text = manifestsYaml(OPTS);
  const d = byKind(parse(text));
  const c = container(d.ds);
  const p = pod(d.ds);

  it('runs on every node in the host network, without hostPID', () => {
    expect(p.hostNetwork).toBe(true);
    expect(p.hostPID).toBe(false);
    expect(p.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(p.dnsPolicy).toBe('Default');
    for (const [k, v] of Object.entries(d.ds.spec!.selector.matchLabels!)) expect(d.ds.spec!.template.metadata!.labels![k]).toBe(v);
  });

  it('the capabilities it needs and no more, each said why in the YAML', () => {
    expect(c.securityContext!.capabilities).toEqual({ drop: ['ALL'], add: ['BPF', 'NET_ADMIN', 'SYS_ADMIN'] });
    expect(c.securityContext!.privileged).toBe(false);
    // the API refuses allowPrivilegeEscalation: false beside CAP_SYS_ADMIN
    expect(c.securityContext!.allowPrivilegeEscalation).not.toBe(false);
    expect(text).toMatch(/# SYS_ADMIN, unavoidable: .*GET_FD_BY_ID/);
    expect(text).toMatch(/# NET_ADMIN: /);
    expect(text).toMatch(/# BPF: /);
    expect(text).toMatch(/hostPID: false # not needed: /);
  });

  it('mounts the host bpffs and cgroup v2 root, and the config where --config reads it', () => {
    const mount = (name: string): k8s.V1VolumeMount => c.volumeMounts!.find((m) => m.name === name)!;
    const vol = (name: string): k8s.V1Volume => p.volumes!.find((v) => v.name === name)!;
    expect(vol('bpffs').hostPath!.path).toBe('/sys/fs/bpf');
    expect(mount('bpffs').mountPath).toBe('/sys/fs/bpf');
    expect(vol('cgroup').hostPath!.path).toBe('/sys/fs/cgroup');
    expect(vol('state').hostPath!.path).toBe('/var/lib/ebpfnet');
    // every mount names a volume
    for (const m of c.volumeMounts!) expect(vol(m.name), m.name).toBeDefined();
    expect(vol('config').configMap!.name).toBe(d.config.metadata!.name);
    const i = c.args!.indexOf('--config');
    expect(c.args![i + 1]).toBe(`${mount('config').mountPath}/${CONFIG_FILE}`);
    // the config is one the agent accepts, and attaches the balancer to the mounted host cgroup root
    const cfg = parseConfig(d.config.data![CONFIG_FILE], 'agent.yaml');
    expect(cfg.lb!.cgroup).toBe(mount('cgroup').mountPath);
    expect(cfg.api.listen).toBeDefined();
  });

  it('NODE_NAME from the downward API, passed as --node-name', () => {
    expect(c.env).toContainEqual({ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
    const i = c.args!.indexOf('--node-name');
    expect(c.args![i + 1]).toBe('$(NODE_NAME)');
    expect(c.command).toEqual(['ebpfnet']);
    expect(c.args![0]).toBe('agent');
    expect(c.image).toBe('registry.example.com/ebpfnet:1.2.3');
  });

  it('probes /healthz and /readyz where the agent listens', () => {
    const listen = parseConfig(d.config.data![CONFIG_FILE], 'agent.yaml').api.listen!;
    const [host, port] = listen.split(':');
    expect(c.livenessProbe!.httpGet).toMatchObject({ path: '/healthz', port: Number(port), host });
    expect(c.readinessProbe!.httpGet).toMatchObject({ path: '/readyz', port: Number(port), host });
  });

  it('requests resources', () => {
    expect(c.resources!.requests).toEqual({ cpu: expect.any(String), memory: expect.any(String) });
    expect(c.resources!.limits!.memory).toBeDefined();
  });

  it('--api-server sets the address the in-cluster client dials', () => {
    const e = container(byKind(parse(manifestsYaml({ ...OPTS, apiServer: { host: '192.168.56.11', port: 6443 } }))).ds).env!;
    expect(e).toContainEqual({ name: 'KUBERNETES_SERVICE_HOST', value: '192.168.56.11' });
    expect(e).toContainEqual({ name: 'KUBERNETES_SERVICE_PORT', value: '6443' });
    expect(c.env!.map((x) => x.name)).toEqual(['NODE_NAME']);
  });
});

describe('the k3s lab demo (vagrant/k3s/demo.yaml)', () => {
  it('validates, and its Service names a targetPort the pods declare', () => {
    const docs = parse(readFileSync(new URL('../../vagrant/k3s/demo.yaml', import.meta.url), 'utf8'));
    const dep = docs.find((d) => d.kind === 'Deployment')!;
    const svc = docs.find((d) => d.kind === 'Service')!;
    expect(() => new Deployment(dep as never).validate()).not.toThrow();
    expect(() => new Service(svc as never).validate()).not.toThrow();
    expect(unknownFields(dep, 'V1Deployment')).toEqual([]);
    expect(unknownFields(svc, 'V1Service')).toEqual([]);
    const ports = (dep as unknown as k8s.V1Deployment).spec!.template.spec!.containers[0].ports!.map((p) => p.name);
    expect(ports).toContain((svc as unknown as k8s.V1Service).spec!.ports![0].targetPort);
  });
});

describe('ebpfnet kubernetes manifests (CLI)', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  async function run(args: string[]): Promise<{ out: string; err: string }> {
    let out = '';
    let err = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
    await buildProgram().parseAsync(args, { from: 'user' });
    return { out, err };
  }

  it('k8s is an alias; --namespace and --image reach every document', async () => {
    const { out, err } = await run(['k8s', 'manifests', '--namespace', 'ebpfnet-system', '--image', 'x/ebpfnet:9']);
    const d = byKind(parse(out));
    expect(d.ds.metadata!.namespace).toBe('ebpfnet-system');
    expect(d.binding.subjects![0].namespace).toBe('ebpfnet-system');
    expect(container(d.ds).image).toBe('x/ebpfnet:9');
    expect(err).toMatch(/no --api-server/);
  });

  it('defaults: kube-system and the image named after this version', async () => {
    const { out } = await run(['kubernetes', 'manifests', '--api-server', '10.0.0.1:6443']);
    const d = byKind(parse(out));
    expect(d.ds.metadata!.namespace).toBe('kube-system');
    expect(container(d.ds).image).toMatch(/^ebpfnet:\d+\.\d+\.\d+/);
  });

  it('-o json prints a List kubectl takes, of the same objects as the YAML', async () => {
    const { out } = await run(['k8s', 'manifests', '-o', 'json', '--api-server', '10.0.0.1:6443']);
    const { out: yamlOut } = await run(['k8s', 'manifests', '-o', 'yaml', '--api-server', '10.0.0.1:6443']);
    const list = JSON.parse(out);
    expect(list).toMatchObject({ apiVersion: 'v1', kind: 'List' });
    expect(list.items).toEqual(parse(yamlOut));
  });

  it('bad input is one usage error before anything is printed', async () => {
    for (const args of [['--namespace', 'Kube_System'], ['--api-server', 'nohost'], ['--api-server', '10.0.0.1:99999'], ['--image', 'a b']]) {
      let out = '';
      vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
      const e = await buildProgram().parseAsync(['k8s', 'manifests', ...args], { from: 'user' }).then(() => null, (x: unknown) => x);
      expect(e, args.join(' ')).toBeInstanceOf(EbpfnetError);
      expect((e as EbpfnetError).code).toBe('EBPFNET_USAGE');
      expect((e as EbpfnetError).message).not.toContain('\n');
      expect(out).toBe('');
    }
  });

  it('parses --api-server forms', () => {
    expect(parseApiServer('192.168.56.11:6443')).toEqual({ host: '192.168.56.11', port: 6443 });
    expect(parseApiServer('[fd00::11]:6443')).toEqual({ host: 'fd00::11', port: 6443 });
    expect(parseApiServer('api.example.com:443')).toEqual({ host: 'api.example.com', port: 443 });
    for (const bad of ['fd00::11:6443', '[10.0.0.1]:6443', ':6443', 'a:0', 'a:', 'a b:1']) expect(() => parseApiServer(bad), bad).toThrow(EbpfnetError);
    expect(checkNamespace('kube-system')).toBe('kube-system');
    expect(() => checkNamespace('a'.repeat(64))).toThrow(EbpfnetError);
  });
});
