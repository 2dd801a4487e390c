// SPDX-License-Identifier: Apache-2.0
export * from './layout.js';
export * from './guard.js';
export * from './kinds.js';
export * from './system.js';
export * from './pinfs.js';
export { pruneEmptyDirs, withDir } from './dirs.js';
export { BtfSpec } from './btf.js';
export { BpfMap, openPinnedMap, mapInfoByFd, sumValues, type MapFill, type UpdateFlag } from './map.js';
export { BpfProgram, type TestRunInput, type TestRunResult } from './program.js';
export { LINK_TYPE, Link, XdpLink, linkInfo, openPinnedLink, type LinkInfo, type XdpMode } from './link.js';
export { ObjectSpec, BpfObject, type ProgramSpec, type MapSpec, type LoadOptions } from './object.js';
export { BpfTable, openPinnedTable } from './table.js';
export { RingBuffer, type RingStats } from './ringbuf.js';
export { objectPath, bpfObjectDir, packageDir } from './paths.js';
export { xdpAttachment, detachXdp, progName, tcxIngressProgIds, tcxProgIds, type XdpAttachment } from './xdp.js';
export { netInterfaces, watchInterfaces, type InterfaceWatch, type NetInterface } from './netdev.js';
export { enableRunStats, progInfo, progInfoByFd, BPF_STATS_SYSCTL, type ProgInfo, type RunStats } from './stats.js';
