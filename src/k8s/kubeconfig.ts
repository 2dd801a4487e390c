// SPDX-License-Identifier: Apache-2.0
// Where the agent finds its cluster: `--kubeconfig PATH` (or kubernetes.kubeconfig in the config),
// else $KUBECONFIG, else the pod's service account (in-cluster), else ~/.kube/config. Each failure
// is one line naming the source and what to do.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { EbpfnetError } from '../errors.js';

export const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface KubeSource {
  kc: KubeConfig;
  /** what was used, for the log and `kubernetes status`: `file /root/.kube/config`, `in-cluster` */
  source: string;
  server: string;
}

const bad = (detail: string, hint: string): EbpfnetError => new EbpfnetError('EBPFNET_USAGE', 'kubernetes', detail, { hint });

export function loadKubeConfig(path?: string | null, env: NodeJS.ProcessEnv = process.env): KubeSource {
  const kc = new KubeConfig();
  let source: string;
  const file = path || env.KUBECONFIG?.split(':').find((f) => f && existsSync(f));
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw bad(`kubeconfig ${file}: ${code === 'ENOENT' ? 'no such file' : (code ?? (e as Error).message)}`, 'give --kubeconfig a readable kubeconfig file (kubectl config view --raw > FILE)');
    }
    try {
      kc.loadFromString(text);
    } catch (e) {
      throw bad(`kubeconfig ${file}: not a kubeconfig (${(e as Error).message.split('\n')[0]})`, 'write it as kubectl does (apiVersion: v1, kind: Config, clusters, users, contexts)');
    }
    source = `file ${file}`;
  } else if (env.KUBERNETES_SERVICE_HOST && existsSync(SERVICE_ACCOUNT_TOKEN)) {
    kc.loadFromCluster();
    source = 'in-cluster (service account)';
  } else if (existsSync(join(homedir(), '.kube', 'config'))) {
    kc.loadFromFile(join(homedir(), '.kube', 'config'));
    source = `file ${join(homedir(), '.kube', 'config')}`;
  } else {
    throw bad('no kubeconfig: neither --kubeconfig, $KUBECONFIG, a service account (in a pod) nor ~/.kube/config', 'pass --kubeconfig PATH or set kubernetes.kubeconfig in the agent config');
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw bad(`kubeconfig (${source}): its current context names no cluster`, 'set current-context to a context with a cluster (kubectl config use-context NAME)');
  return { kc, source, server: cluster.server };
}
