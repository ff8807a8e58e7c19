// Loads the vectors the Python reference writes (tests/js/vectors.py); path in ASTRANET_VECTORS.
import { readFileSync } from 'node:fs';

const path = process.env.ASTRANET_VECTORS;
if (!path) throw new Error('ASTRANET_VECTORS is not set: run these tests through pytest tests/js');
export const vectors = JSON.parse(readFileSync(path, 'utf8'));
export const hex = (/** @type {string} */ s) => Uint8Array.from(Buffer.from(s, 'hex'));
export const toHex = (/** @type {Uint8Array} */ b) => Buffer.from(b).toString('hex');
