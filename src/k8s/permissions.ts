// SPDX-License-Identifier: Apache-2.0
// What the agent reads from the Kubernetes API, and nothing more. One list: the ClusterRole of
// `ebpfnet kubernetes manifests` is generated from it, and the sync side lists and watches exactly
// these (a test holds both to it), so the role cannot drift from what the agent does.

export interface ApiPermission {
  /** API group: '' is the core group */
  apiGroup: string;
  resource: string;
  verbs: readonly ('get' | 'list' | 'watch')[];
  /** what the agent uses it for */
  why: string;
}

export const AGENT_PERMISSIONS: readonly ApiPermission[] = [
  { apiGroup: '', resource: 'services', verbs: ['get', 'list', 'watch'], why: 'VIPs, ports, traffic policies, session affinity' },
  { apiGroup: 'discovery.k8s.io', resource: 'endpointslices', verbs: ['get', 'list', 'watch'], why: 'the backends of each Service' },
  { apiGroup: '', resource: 'nodes', verbs: ['get', 'list', 'watch'], why: "this node's addresses (NodePort) and zone (topology hints)" },
];
