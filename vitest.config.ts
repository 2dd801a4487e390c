// SPDX-License-Identifier: Apache-2.0
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Kernel tests share one kernel (interfaces, pins, cgroups): run files one at a time.
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
    // fails a file that put an interface or address of its own into the root network namespace
    setupFiles: ['test/helpers/root-netns-guard.ts'],
  },
});
