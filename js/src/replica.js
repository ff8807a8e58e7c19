/**
 * The client's copy of one room's replicated state: a mirror of astranet/replication/replica.py.
 * `apply` decodes a Snapshot's payload against the kept base named by `base_id`, keeps the
 * result (a later base), and, when it is the newest, makes it current with dequantized rows.
 * A payload that fails to decode changes nothing (and must not be acked). @module
 */

import { decodePayload } from './codec.js';
import { SnapshotDecodeError } from './errors.js';

/** Kept decoded snapshots: at least the server's ring (astranet DEFAULT_RING = 64). */
export const DEFAULT_RING = 64;

export class Replica {
  /** @param {import('./schema.js').Schema} schema */
  constructor(schema, keep = DEFAULT_RING) {
    this.schema = schema;
    this.keep = keep;
    /** @type {Map<number, import('./codec.js').DecodedSnapshot>} */
    this.kept = new Map();
    /** @type {import('./codec.js').DecodedSnapshot | null} */
    this.latest = null;
    /** @type {Float64Array} flat float64 rows of the latest snapshot (n x schema.width) */
    this.rows = new Float64Array(0);
  }

  /**
   * @param {number} snapshotId @param {number | null} baseId @param {Uint8Array} payload
   * @param {boolean} compressed @param {number} serverTick
   * @returns {{snapshot: import('./codec.js').DecodedSnapshot, isLatest: boolean}}
   */
  apply(snapshotId, baseId, payload, compressed, serverTick) {
    let base = null;
    if (baseId !== null) {
      base = this.kept.get(baseId) ?? null;
      if (!base) throw new SnapshotDecodeError(`unknown base snapshot ${baseId}`);
    }
    const state = decodePayload(this.schema, payload, compressed, base, { snapshotId, tick: serverTick, kept: (id) => this.kept.get(id) });
    this.kept.set(snapshotId, state);
    if (this.kept.size > this.keep) this.kept.delete(Math.min(...this.kept.keys()));
    if (this.latest && snapshotId <= this.latest.id) return { snapshot: state, isLatest: false };
    this.latest = state;
    this.rows = this.schema.dequantize(state);
    return { snapshot: state, isLatest: true };
  }

  /** Forget every base (a new session starts from a full snapshot). */
  clear() {
    this.kept.clear();
    this.latest = null;
    this.rows = new Float64Array(0);
  }
}

/**
 * The row of `netId` in ascending `netIds` (null when absent).
 * @param {Uint32Array} netIds @param {Float64Array} rows @param {number} width @param {number} netId
 */
export function rowOf(netIds, rows, width, netId) {
  let lo = 0;
  let hi = netIds.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (netIds[mid] < netId) lo = mid + 1;
    else hi = mid;
  }
  return lo < netIds.length && netIds[lo] === netId ? rows.subarray(lo * width, lo * width + width) : null;
}
