// SPDX-License-Identifier: Apache-2.0
// The agent's Kubernetes section: the node's service proxy. It watches the API (src/k8s/sync.ts)
// and hands each Service's translation to the balancer's section (AgentLb), which writes it through
// the balancer's atomic per-service switch beside the typed services. Kubernetes' services are not
// in the agent's state file: the API is their source of truth, the pinned maps keep them across a
// restart, and the first full sync after a start replaces whatever the pins held.
import { hostname } from 'node:os';
import { loadKubeConfig } from '../k8s/kubeconfig.js';
import { KubeSync, type SyncStatus } from '../k8s/sync.js';
import type { Translation } from '../k8s/translate.js';
import type { KubernetesConfig } from './config.js';
import type { AgentLb } from './lb.js';
import type { Logger } from './log.js';

export interface KubernetesStatus extends SyncStatus {
  /** where the kubeconfig came from */
  source: string;
  /** VIPs Kubernetes holds in the balancer now */
  vips: number;
  /** claims refused or typed services shadowed: as they stand, and how many since start */
  conflicts: Array<{ service: string; reason: string }>;
  conflictsTotal: number;
  /** ports not balanced (SCTP, ...) and Services skipped (headless, ExternalName), as they stand */
  refused: Array<{ port: string; reason: string }>;
  /** writes to the balancer that failed (a full map), since start */
  applyErrors: number;
}

/** The node name when none is given: the host's, as the kubelet names its node by default. */
export const defaultNodeName = (): string => hostname().toLowerCase();

export class AgentKubernetes {
  private applyErrors = 0;
  private readonly sync: KubeSync;
  private readonly source: string;

  private constructor(
    config: KubernetesConfig,
    private readonly lb: AgentLb,
    private readonly log: Logger,
  ) {
    const { kc, source, server } = loadKubeConfig(config.kubeconfig);
    this.source = source;
    const nodeName = config.nodeName ?? defaultNodeName();
    this.sync = new KubeSync(kc, { nodeName, server, log: (level, msg) => log[level](msg) }, { synced: (all) => this.synced(all), changed: (k, t) => this.changed(k, t) });
    log.info(`kubernetes: ${server} (${source}), node ${nodeName}`);
  }

  /** Reads the kubeconfig (a bad one fails the start) and starts the sync, which never fails the start. */
  static open(config: KubernetesConfig | null, lb: AgentLb, log: Logger): AgentKubernetes | null {
    if (!config) return null;
    const k = new AgentKubernetes(config, lb, log);
    k.sync.start();
    return k;
  }

  /** Once the first full sync is in the kernel. */
  get ready(): boolean {
    return this.sync.everSynced;
  }

  /** What /readyz says while not ready. */
  notReadyReason(): string {
    const st = this.sync.status();
    return `waiting for the first full sync from ${st.server}${st.lastError ? ` (last error: ${st.lastError.resource}: ${st.lastError.message})` : ''}`;
  }

  status(): KubernetesStatus {
    const refused: Array<{ port: string; reason: string }> = [];
    for (const [key, t] of this.sync.translationsNow()) {
      if (t.skipped) refused.push({ port: key, reason: `skipped: ${t.skipped}` });
      refused.push(...t.refused, ...t.truncated);
    }
    return { ...this.sync.status(), source: this.source, vips: this.lb.kubernetesServices, conflicts: this.lb.conflicts(), conflictsTotal: this.lb.conflictsTotal, refused, applyErrors: this.applyErrors };
  }

  close(): void {
    void this.sync.stop();
  }

  private synced(all: Map<string, Translation>): void {
    const specs = new Map([...all].map(([k, t]) => [k, t.specs]));
    this.applying('the full sync', () => this.lb.replaceKubernetes(specs));
    this.logProblems(all);
  }

  private changed(key: string, t: Translation | null): void {
    this.applying(key, () => this.lb.updateKubernetes(key, t?.specs ?? null));
    if (t) this.logProblems(new Map([[key, t]]));
  }

  /** A failed kernel write is counted and logged: the sync goes on (the next change of that Service retries it). */
  private applying(what: string, fn: () => void): void {
    const before = this.lb.conflictsTotal;
    try {
      fn();
    } catch (e) {
      this.applyErrors++;
      this.log.error({ err: e }, `kubernetes: apply ${what}: ${(e as Error).message}`);
    }
    if (this.lb.conflictsTotal > before) for (const c of this.lb.conflicts()) this.log.warn(`kubernetes: conflict on ${c.service}: ${c.reason}`);
  }

  private logProblems(ts: Map<string, Translation>): void {
    for (const t of ts.values()) for (const p of [...t.refused, ...t.truncated]) this.log.warn(`kubernetes: ${p.port}: ${p.reason}`);
  }
}
