// SPDX-License-Identifier: Apache-2.0
// Strict JSON for request bodies, and large JSON responses in chunks: both live with the agent,
// which reads JSON config files and hashes large sections with them too (src/agent/json.ts).
export { duplicateKey, jsonChunks } from '../agent/json.js';
