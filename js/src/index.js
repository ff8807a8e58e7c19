/**
 * astranet browser client: `import { GameClient, ClientWorld, Schema } from 'astranet-client'`.
 * See docs/browser.md. @module
 */
export * from './backoff.js';
export * from './client.js';
export * from './clock.js';
export * from './codec.js';
export * from './contract.js';
export * from './crc32.js';
export * from './errors.js';
export * from './interpolation.js';
export * from './lz4.js';
export * from './messages.js';
export * from './prediction.js';
export * from './replica.js';
export * from './schema.js';
export * from './signing.js';
export * from './world.js';
