// SPDX-License-Identifier: Apache-2.0
// What `ebpfnet kubernetes manifests` prints: the smallest set that runs the agent on every node as
// its service proxy. Built as typed objects (the client library's own types), then written as YAML
// with a comment wherever a privilege or a host mount needs its reason said. Pure: the caller
// passes the image and the namespace, nothing is read here.
import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1DaemonSet,
  V1EnvVar,
  V1PolicyRule,
  V1ServiceAccount,
} from '@kubernetes/client-node';
import { Document, isMap, isScalar, isSeq, stringify, type ParsedNode } from 'yaml';
import { AGENT_PERMISSIONS } from './permissions.js';

export const DEFAULT_NAMESPACE = 'kube-system';
export const APP_NAME = 'ebpfnet';
/** where the agent listens inside the pod: loopback only (no token needed), the probes ask there */
export const AGENT_LISTEN_HOST = '127.0.0.1';
export const AGENT_LISTEN_PORT = 9900;
/** the host's cgroup v2 root, mounted into the pod: the balancer attaches there (every process of the node) */
export const HOST_CGROUP_MOUNT = '/host/sys/fs/cgroup';
export const CONFIG_MOUNT = '/etc/ebpfnet';
export const CONFIG_FILE = 'agent.yaml';

export interface ManifestOptions {
  image: string;
  namespace: string;
  /**
   * `HOST:PORT` of the API server itself. Without kube-proxy nothing answers the API's ClusterIP
   * (KUBERNETES_SERVICE_HOST) until the agent has programmed it, and the agent needs the API to do
   * that: so in-cluster it must be told the real address. Unset: the pod keeps the cluster's value.
   */
  apiServer?: { host: string; port: number };
}

/** A typed manifest and the comments its YAML carries, by path inside the object. */
export interface Manifest<T = unknown> {
  object: T;
  comments: Array<{ path: (string | number)[]; text: string; before?: boolean }>;
}

const labels = { 'app.kubernetes.io/name': APP_NAME, 'app.kubernetes.io/component': 'service-proxy' };

/** ClusterRole rules, one per resource, exactly AGENT_PERMISSIONS. */
export const clusterRoleRules = (): V1PolicyRule[] => AGENT_PERMISSIONS.map((p) => ({ apiGroups: [p.apiGroup], resources: [p.resource], verbs: [...p.verbs] }));

/** The agent's configuration file, as the ConfigMap holds it (read by the agent's own config parser). */
export const agentConfigText = (): string =>
  stringify({
    api: { listen: `${AGENT_LISTEN_HOST}:${AGENT_LISTEN_PORT}` },
    log: { format: 'json' },
    lb: { cgroup: HOST_CGROUP_MOUNT },
  });

/** The agent's command line in the pod. */
export const agentArgs = (): string[] => ['agent', '--config', `${CONFIG_MOUNT}/${CONFIG_FILE}`, '--node-name', '$(NODE_NAME)'];

export function manifests(o: ManifestOptions): Manifest[] {
  const meta = (name: string, namespaced = true): { name: string; labels: typeof labels; namespace?: string } => ({ name, ...(namespaced ? { namespace: o.namespace } : {}), labels });

  const sa: Manifest<V1ServiceAccount> = { object: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(APP_NAME) }, comments: [] };

  const role: Manifest<V1ClusterRole> = {
    object: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: meta(APP_NAME, false), rules: clusterRoleRules() },
    comments: [{ path: ['rules'], text: ` read only, and only what the agent lists and watches: ${AGENT_PERMISSIONS.map((p) => `${p.resource} (${p.why})`).join('; ')}`, before: true }],
  };

  const binding: Manifest<V1ClusterRoleBinding> = {
    object: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: meta(APP_NAME, false),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: APP_NAME },
      subjects: [{ kind: 'ServiceAccount', name: APP_NAME, namespace: o.namespace }],
    },
    comments: [],
  };

  const config: Manifest<V1ConfigMap> = {
    object: { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta(`${APP_NAME}-agent`), data: { [CONFIG_FILE]: agentConfigText() } },
    comments: [{ path: ['data', CONFIG_FILE], text: ` the balancer attaches to the host's cgroup v2 root (mounted at ${HOST_CGROUP_MOUNT}), so every socket of the node is translated`, before: true }],
  };

  const env: V1EnvVar[] = [{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }];
  if (o.apiServer) {
    env.push({ name: 'KUBERNETES_SERVICE_HOST', value: o.apiServer.host }, { name: 'KUBERNETES_SERVICE_PORT', value: String(o.apiServer.port) });
  }
  const probe = (path: string, period: number, failures: number) => ({
    httpGet: { host: AGENT_LISTEN_HOST, path, port: AGENT_LISTEN_PORT, scheme: 'HTTP' },
    periodSeconds: period,
    timeoutSeconds: 2,
    failureThreshold: failures,
  });
  const hostDir = (name: string, path: string, type: string) => ({ name, hostPath: { path, type } });

  const ds: Manifest<V1DaemonSet> = {
    object: {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: meta(APP_NAME),
      spec: {
        selector: { matchLabels: { 'app.kubernetes.io/name': APP_NAME } },
        updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: APP_NAME,
            priorityClassName: 'system-node-critical',
            hostNetwork: true,
            hostPID: false,
            dnsPolicy: 'Default',
            terminationGracePeriodSeconds: 30,
            tolerations: [{ operator: 'Exists' }],
            containers: [
              {
                name: 'agent',
                image: o.image,
                imagePullPolicy: 'IfNotPresent',
                command: ['ebpfnet'],
                args: agentArgs(),
                env,
                securityContext: {
                  privileged: false,
                  runAsUser: 0,
                  readOnlyRootFilesystem: true,
                  capabilities: { drop: ['ALL'], add: ['BPF', 'NET_ADMIN', 'SYS_ADMIN'] },
                  appArmorProfile: { type: 'Unconfined' },
                },
                livenessProbe: { ...probe('/healthz', 10, 6), initialDelaySeconds: 10 },
                readinessProbe: probe('/readyz', 5, 3),
                resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
                volumeMounts: [
                  { name: 'bpffs', mountPath: '/sys/fs/bpf' },
                  { name: 'cgroup', mountPath: HOST_CGROUP_MOUNT, readOnly: true },
                  { name: 'state', mountPath: '/var/lib/ebpfnet' },
                  { name: 'run', mountPath: '/run/ebpfnet' },
                  { name: 'config', mountPath: CONFIG_MOUNT, readOnly: true },
                  { name: 'tmp', mountPath: '/tmp' },
                ],
              },
            ],
            volumes: [
              hostDir('bpffs', '/sys/fs/bpf', 'Directory'),
              hostDir('cgroup', '/sys/fs/cgroup', 'Directory'),
              hostDir('state', '/var/lib/ebpfnet', 'DirectoryOrCreate'),
              hostDir('run', '/run/ebpfnet', 'DirectoryOrCreate'),
              { name: 'config', configMap: { name: `${APP_NAME}-agent` } },
              { name: 'tmp', emptyDir: {} },
            ],
          },
        },
      },
    },
    comments: [],
  };
  const pod = ['spec', 'template', 'spec'];
  const c0 = [...pod, 'containers', 0];
  ds.comments.push(
    { path: [...pod, 'hostNetwork'], text: " the node's network namespace: the agent is the node's service proxy (and reaches the API without one)" },
    { path: [...pod, 'hostPID'], text: ' not needed: the balancer attaches by cgroup path and pins go to the mounted bpffs; nothing looks into other processes' },
    { path: [...pod, 'dnsPolicy'], text: " the node's resolver: cluster DNS is a Service, which this agent is what serves" },
    { path: [...pod, 'tolerations'], text: ' every node, whatever its taints: a node without the proxy has no Services', before: true },
    {
      path: [...c0, 'securityContext', 'capabilities', 'add'],
      text: [
        ' BPF: load programs, create maps, pin them',
        ' NET_ADMIN: the cgroup socket hooks are network program types; tc/XDP attach on node interfaces',
        ' SYS_ADMIN, unavoidable: the kernel allows BPF_*_GET_FD_BY_ID and *_GET_NEXT_ID (finding the',
        ' programs and links a previous agent attached, after a restart) and BPF_ENABLE_STATS (run time',
        ' per program in /metrics) to CAP_SYS_ADMIN only. Not privileged: no devices, no other capability.',
      ].join('\n'),
      before: true,
    },
    { path: [...c0, 'securityContext', 'appArmorProfile'], text: " the runtime's default profile forbids writes under /sys/fs/bpf (pinning makes files there)", before: true },
    { path: [...c0, 'securityContext', 'runAsUser'], text: ' the agent checks for uid 0; what it may do is the capability list below' },
    { path: [...c0, 'securityContext', 'privileged'], text: ' (allowPrivilegeEscalation stays unset: the API refuses false beside SYS_ADMIN)' },
    { path: [...c0, 'livenessProbe'], text: ` the agent answers on ${AGENT_LISTEN_HOST}:${AGENT_LISTEN_PORT} only; with hostNetwork the kubelet reaches it there`, before: true },
    { path: [...c0, 'resources', 'limits'], text: ' no CPU limit: throttling would delay Service updates', before: true },
    { path: [...pod, 'volumes', 0], text: ' the host bpffs (systemd mounts it): pins outlive the pod, so the datapath keeps working while the agent restarts', before: true },
    { path: [...pod, 'volumes', 1], text: " the host's cgroup v2 root, read only: attaching needs only an open directory", before: true },
    { path: [...pod, 'volumes', 2], text: ' desired state and token, kept across restarts (the same place `ebpfnet agent` uses on a host)', before: true },
    { path: [...pod, 'volumes', 3], text: ' locks, shared with ebpfnet commands run on the host', before: true },
  );
  if (o.apiServer) ds.comments.push({ path: [...c0, 'env', 1], text: " the API server's own address: its ClusterIP is only reachable once this agent has programmed it", before: true });
  return [sa, role, binding, config, ds];
}

/**
 * Puts a comment in the YAML: after a scalar on its line, or (`before`) on the line(s) above the key
 * or list item the path names.
 */
function placeComment(doc: Document.Parsed | Document, path: (string | number)[], text: string, before: boolean): void {
  const where = `manifest comment at ${path.join('.')}`;
  if (!before) {
    const node = doc.getIn(path, true);
    if (!isScalar(node)) throw new Error(`${where}: not a scalar (give before: true)`);
    node.comment = text;
    return;
  }
  const parent = path.length > 1 ? doc.getIn(path.slice(0, -1), true) : doc.contents;
  const last = path[path.length - 1];
  if (isMap(parent)) {
    const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === last);
    if (!pair || !isScalar(pair.key)) throw new Error(`${where}: no such key`);
    pair.key.commentBefore = text;
  } else if (isSeq(parent) && typeof last === 'number' && parent.items[last]) {
    (parent.items[last] as ParsedNode).commentBefore = text;
  } else throw new Error(`${where}: no such field`);
}

/** The manifests as one YAML stream, documents separated by `---`, with their comments. */
export function manifestsYaml(o: ManifestOptions, header?: string): string {
  return manifests(o)
    .map((m, i) => {
      // no anchors: a reader of the YAML sees every field where it applies
      const doc = new Document(m.object, { aliasDuplicateObjects: false });
      for (const c of m.comments) placeComment(doc, c.path, c.text, !!c.before);
      if (i === 0 && header) doc.commentBefore = header;
      return doc.toString({ lineWidth: 0 });
    })
    .join('---\n');
}
