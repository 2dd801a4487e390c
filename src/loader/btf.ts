// SPDX-License-Identifier: Apache-2.0
// Reads the BTF libbpf parsed from an object: struct layouts (for the drift test against maps/) and
// the offsets of variables in a data section (to write `const volatile` configuration before load).
import { EbpfnetError } from '../errors.js';
import { BtfType, decodeAt, decodeStruct, libbpf } from '../libbpf/index.js';
import { BTF_KIND } from './kinds.js';
import type { FieldLayout } from './layout.js';

interface RawType {
  ptr: unknown;
  name: string;
  kind: number;
  vlen: number;
  kindFlag: boolean;
  sizeOrType: number;
}

export class BtfSpec {
  constructor(private readonly btf: unknown) {}

  type(id: number): RawType {
    const b = libbpf();
    const ptr = b.btf__type_by_id(this.btf as never, id);
    if (!ptr) throw new EbpfnetError('EBPFNET_KERNEL', 'read BTF', `no type with id ${id}`);
    const t = decodeStruct<{ name_off: number; info: number; size_or_type: number }>(ptr, BtfType);
    return {
      ptr,
      name: b.btf__name_by_offset(this.btf as never, t.name_off) ?? '',
      kind: (t.info >>> 24) & 0x1f,
      vlen: t.info & 0xffff,
      kindFlag: t.info >>> 31 === 1,
      sizeOrType: t.size_or_type,
    };
  }

  size(id: number): number {
    return Number(libbpf().btf__resolve_size(this.btf as never, id));
  }

  /** Follows typedefs and modifiers to the real type. */
  resolve(id: number): number {
    return libbpf().btf__resolve_type(this.btf as never, id);
  }

  /** A struct's name, size and members (byte offsets), or null for a non-struct type. */
  struct(id: number): { name: string; size: number; fields: FieldLayout[] } | null {
    const t = this.type(this.resolve(id));
    if (t.kind !== BTF_KIND.STRUCT) return null;
    const fields: FieldLayout[] = [];
    const members = decodeAt<number[]>(t.ptr, 12, 'uint32_t', t.vlen * 3);
    for (let i = 0; i < t.vlen; i++) {
      const [nameOff, type, off] = members.slice(i * 3, i * 3 + 3);
      // with kind_flag the low 24 bits are the bit offset and the top 8 a bitfield size
      const bits = t.kindFlag ? off & 0xffffff : off;
      fields.push({ name: libbpf().btf__name_by_offset(this.btf as never, nameOff) ?? '', offset: bits / 8, size: this.size(type) });
    }
    return { name: t.name, size: t.sizeOrType, fields };
  }

  /** Variables of a data section (`.rodata`, `.bss`) with their offsets. */
  sectionVars(section: string): Array<{ name: string; offset: number; size: number; type: number }> {
    const id = libbpf().btf__find_by_name_kind(this.btf as never, section, BTF_KIND.DATASEC);
    if (id < 0) return [];
    const t = this.type(id);
    const raw = decodeAt<number[]>(t.ptr, 12, 'uint32_t', t.vlen * 3);
    const out = [];
    for (let i = 0; i < t.vlen; i++) {
      const [varId, offset, size] = raw.slice(i * 3, i * 3 + 3);
      const v = this.type(varId);
      out.push({ name: v.name, offset, size, type: v.sizeOrType });
    }
    return out;
  }
}

let vmlinux: unknown = undefined;

/**
 * Whether the running kernel's BTF has a function (one a trampoline can attach to) or a struct of
 * this name. False when there is no kernel BTF at all.
 */
export function kernelHas(kind: 'func' | 'struct', name: string): boolean {
  const b = libbpf();
  // loaded once per process: the kernel's BTF does not change under us, and parsing it takes ~50 ms
  if (vmlinux === undefined) vmlinux = b.btf__load_vmlinux_btf() ?? null;
  if (!vmlinux) return false;
  return b.btf__find_by_name_kind(vmlinux as never, name, kind === 'func' ? BTF_KIND.FUNC : BTF_KIND.STRUCT) > 0;
}
