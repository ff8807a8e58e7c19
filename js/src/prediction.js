/**
 * Prediction history, reconciliation decision and correction smoothing: a mirror of
 * astranet/replication/prediction.py (PredictionHistory, compare_prediction,
 * CorrectionSmoother). States are flat Float64Array rows in the schema's layout. @module
 */

export const MAX_PREDICTED_INPUTS = 256;
export const DEFAULT_SMOOTHING_MS = 100.0;

/** @typedef {{seq: number, command: any, state: Float64Array}} PredictedInput */

export class PredictionHistory {
  constructor(width = 1, capacity = MAX_PREDICTED_INPUTS) {
    this.width = width;
    this.capacity = capacity;
    this.overflowed = 0;
    /** @type {PredictedInput[]} ascending seq */
    this.entries = [];
    /** @type {PredictedInput | null} newest acknowledged input */
    this.acked = null;
  }

  get length() {
    return this.entries.length;
  }

  get newest() {
    return this.entries.length ? this.entries[this.entries.length - 1] : null;
  }

  /** @param {number} seq @param {any} command @param {Float64Array} state */
  record(seq, command, state) {
    const newest = this.newest;
    if (newest && seq <= newest.seq) throw new RangeError(`seq ${seq} is not after ${newest.seq}`);
    this.entries.push({ seq, command, state: Float64Array.from(state) });
    if (this.entries.length > this.capacity) {
      this.entries.shift();
      this.overflowed += 1;
    }
  }

  /** @param {number} seq @returns {Float64Array | null} */
  stateAt(seq) {
    const entry = this.entries.find((e) => e.seq === seq);
    if (entry) return entry.state;
    return this.acked && this.acked.seq === seq ? this.acked.state : null;
  }

  /** Forget every input up to and including `seq`. @param {number} seq */
  acknowledge(seq) {
    let cut = 0;
    while (cut < this.entries.length && this.entries[cut].seq <= seq) cut++;
    if (cut) this.acked = this.entries[cut - 1];
    this.entries.splice(0, cut);
  }

  pending() {
    return [...this.entries];
  }

  /** @param {number} seq @param {Float64Array} state */
  restate(seq, state) {
    const entry = this.entries.find((e) => e.seq === seq);
    if (!entry) throw new RangeError(`seq ${seq} is not in the history`);
    entry.state = Float64Array.from(state);
  }

  clear() {
    this.entries = [];
    this.acked = null;
  }
}

/**
 * Compare the server's state after `lastInputSeq` with the prediction for it, then acknowledge
 * it. `error` is the largest absolute difference over `columns` (all when null): NaN when
 * nothing was compared, Infinity when no prediction exists for that seq.
 * @param {PredictionHistory} history @param {number | null} lastInputSeq
 * @param {Float64Array | ArrayLike<number>} serverState
 * @param {{tolerance?: number, columns?: number[] | null}} [options]
 * @returns {{lastInputSeq: number | null, error: number, rewind: boolean, compared: boolean, predicted: Float64Array | null}}
 */
export function comparePrediction(history, lastInputSeq, serverState, { tolerance = 0.0, columns = null } = {}) {
  if (lastInputSeq === null) return { lastInputSeq, error: NaN, rewind: false, compared: false, predicted: null };
  const predicted = history.stateAt(lastInputSeq);
  const nothingPredicted = history.length === 0;
  history.acknowledge(lastInputSeq);
  if (!predicted) {
    const error = nothingPredicted ? NaN : Infinity;
    return { lastInputSeq, error, rewind: true, compared: !Number.isNaN(error), predicted: null };
  }
  let error = 0;
  const cols = columns ?? Array.from(predicted.keys());
  for (const c of cols) error = Math.max(error, Math.abs(serverState[c] - predicted[c]));
  return { lastInputSeq, error, rewind: !(error <= tolerance), compared: true, predicted };
}

/** Displayed = predicted + an offset decaying linearly to zero over `decayMs`. */
export class CorrectionSmoother {
  constructor(width = 1, decayMs = DEFAULT_SMOOTHING_MS, columns = /** @type {number[] | null} */ (null)) {
    this.width = width;
    this.decayMs = decayMs;
    this.columns = columns;
    this.offsetState = new Float64Array(width);
    this.sinceMs = 0;
  }

  /** @param {number} nowMs */
  offset(nowMs) {
    const out = new Float64Array(this.width);
    if (this.decayMs === 0) return out;
    const remaining = Math.max(0, 1 - (nowMs - this.sinceMs) / this.decayMs);
    for (let i = 0; i < this.width; i++) out[i] = this.offsetState[i] * remaining;
    return out;
  }

  /** @param {number} nowMs @param {ArrayLike<number>} before @param {ArrayLike<number>} after */
  correct(nowMs, before, after) {
    if (this.decayMs === 0) return;
    const current = this.offset(nowMs);
    const cols = this.columns ?? Array.from(current.keys());
    const next = current;
    for (const c of cols) next[c] += before[c] - after[c];
    this.offsetState = next;
    this.sinceMs = nowMs;
  }

  /** @param {number} nowMs */
  magnitude(nowMs) {
    return this.offset(nowMs).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  }
}
