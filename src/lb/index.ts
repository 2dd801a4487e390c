// SPDX-License-Identifier: Apache-2.0
// The socket load balancer: the pure half (addresses, service specs, slot tables, plans, views)
// and the kernel half (attach, detach, and the running Balancer behind its pins).
export * from './addr.js';
export * from './model.js';
export * from './slots.js';
export * from './plan.js';
export * from './view.js';
export * from './file.js';
export { withLock, lockPath } from './lock.js';
export * from './balancer.js';
