// SPDX-License-Identifier: Apache-2.0
// Strict JSON for request bodies: the check lives with the agent, which reads JSON config files
// with it too (src/agent/json.ts).
export { duplicateKey } from '../agent/json.js';
