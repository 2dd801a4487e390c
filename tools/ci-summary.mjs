#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// @ts-check
// Reads vitest's JSON report plus the results of CI's other steps and prints the closing line CI
// reads: `N passed, N failed, N skipped`. Exits non-zero when anything failed or was skipped (in CI a
// skipped kernel test is a failure: the kernel did not run the code).
//   node tools/ci-summary.mjs REPORT.json [step=exitcode ...]
import { existsSync, readFileSync } from 'node:fs';

const [report, ...steps] = process.argv.slice(2);
let passed = 0;
let failed = 0;
let skipped = 0;
if (report && existsSync(report)) {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed = r.numPassedTests ?? 0;
  // a file that failed without a failing test (an import error, a failing hook) counts once
  failed = (r.numFailedTests ?? 0) + filesFailedWithoutTests(r);
  skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  for (const f of r.testResults ?? []) {
    for (const t of f.assertionResults ?? []) {
      if (t.status === 'failed') console.log(`FAILED ${f.name.replace(process.cwd() + '/', '')} > ${t.fullName}`);
      if (t.status === 'pending' || t.status === 'skipped' || t.status === 'todo') console.log(`SKIPPED ${f.name.replace(process.cwd() + '/', '')} > ${t.fullName}`);
    }
    if (f.status === 'failed' && !(f.assertionResults ?? []).length) console.log(`FAILED ${f.name}: ${String(f.message).split('\n')[0]}`);
  }
} else {
  console.log(`no test report at ${report}: the test run did not finish`);
  failed++;
}
for (const s of steps) {
  const [name, code] = s.split('=');
  if (code === '0') passed++;
  else {
    failed++;
    console.log(`FAILED ci step ${name} (exit ${code})`);
  }
}

function filesFailedWithoutTests(/** @type {any} */ r) {
  return (r.testResults ?? []).filter((/** @type {any} */ f) => f.status === 'failed' && !(f.assertionResults ?? []).some((/** @type {any} */ t) => t.status === 'failed')).length;
}

console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed || skipped ? 1 : 0);
