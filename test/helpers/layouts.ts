// SPDX-License-Identifier: Apache-2.0
// Every generated layout module (src/gen/*.ts), so tests cover each datapath without naming it.
import type { MapLayout, ProgramLayout, StructLayout, TableLayout } from '../../src/loader/layout.js';

export interface LayoutModule {
  LAYOUT: {
    object: string;
    maps: readonly MapLayout[];
    tables: readonly TableLayout[];
    programs: readonly ProgramLayout[];
    structs: readonly StructLayout[];
    rodata: string | null;
  };
}

const modules = (import.meta as unknown as { glob: (p: string, o: { eager: true }) => Record<string, LayoutModule> }).glob('../../src/gen/*.ts', { eager: true });

export const layouts = (): LayoutModule['LAYOUT'][] => Object.values(modules).map((m) => m.LAYOUT);
