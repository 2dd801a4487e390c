// SPDX-License-Identifier: Apache-2.0
// The API's bearer token: the one from the config file, or one generated at first start and kept
// mode 0600 in the state directory, so a local admin (root) can read it and nobody else can.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { EbpfnetError } from '../errors.js';
import { ensureDir, tokenPath, writeAtomic } from './store.js';

export function loadToken(stateDir: string, configured?: string): { token: string; source: string } {
  if (configured) return { token: configured, source: 'the config file' };
  ensureDir(stateDir);
  const file = tokenPath(stateDir);
  if (existsSync(file)) {
    // a token others can read is no secret: tighten it rather than trust it silently
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
    const token = readFileSync(file, 'utf8').trim();
    if (token.length < 16) throw new EbpfnetError('EBPFNET_USAGE', `read token ${file}`, 'shorter than 16 characters', { hint: 'remove it and the agent generates a new one' });
    return { token, source: file };
  }
  const token = randomBytes(32).toString('base64url');
  writeAtomic(file, `${token}\n`, 0o600);
  return { token, source: `${file} (generated)` };
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;
export const isLoopback = (host: string): boolean => LOOPBACK.test(host);
