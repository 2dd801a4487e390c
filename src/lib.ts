// SPDX-License-Identifier: Apache-2.0
/**
 * ebpfnet as a library: load BPF objects of your own from TypeScript through the system's libbpf.
 *
 * The lifecycle: {@link ObjectSpec.open} reads a compiled object (no privilege needed), `setConst`
 * writes its `const volatile` knobs, {@link ObjectSpec.load} loads it into the kernel and gives a
 * {@link BpfObject}; its programs attach by kind ({@link BpfProgram.attachXdp}, `attachTcx`,
 * `attachTracepoint`, `attachCgroup`) and return a {@link Link}; its maps are typed by the codecs
 * `ebpfnet-gen-maps` generates from a `maps/<name>.json` layout ({@link BpfMap}, {@link RingBuffer}).
 * Everything attached is detached when the process exits, on a signal or an uncaught error too,
 * unless it was pinned; {@link onShutdown} runs code of yours first.
 *
 * This module is the package's whole public surface (`import ... from 'ebpfnet'`); deep imports
 * into `dist/` are refused by the package's `exports`.
 * @packageDocumentation
 */

// objects: specs (read from the ELF, deterministic) and live kernel objects
export { ObjectSpec, BpfObject, type ProgramSpec, type MapSpec, type LoadOptions } from './loader/object.js';
export { BpfProgram, type XdpAttachOptions, type TestRunInput, type TestRunResult } from './loader/program.js';
export { Link, XdpLink, openPinnedLink, type XdpMode } from './loader/link.js';

// maps, tables and ring buffers, typed by the layouts generated from maps/
export { BpfMap, openPinnedMap, type UpdateFlag, type MapFill } from './loader/map.js';
export { BpfTable, openPinnedTable } from './loader/table.js';
export { RingBuffer, type RingOptions, type RingStats } from './loader/ringbuf.js';
export {
  scalar,
  type Codec,
  type FieldLayout,
  type MapKind,
  type MapLayout,
  type ProgramKind,
  type ProgramLayout,
  type StructLayout,
  type TableLayout,
} from './loader/layout.js';

// the machine: bpffs for pins, and the exit guard
export { BPFFS, type MountResult } from './loader/system.js';
export { ensureBpffs } from './loader/pinfs.js';
export { onShutdown, setGuardReport, type GuardReport } from './loader/guard.js';

// errors: one type with a code per cause
export {
  EbpfnetError,
  NotSupportedError,
  VerifierError,
  ERROR_CODES,
  type ErrorCode,
  type ErrorDetails,
  type VerifierStats,
} from './errors.js';
