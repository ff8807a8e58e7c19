/**
 * Snapshot interpolation of remote entities: a mirror of astranet/replication/interpolation.py
 * (SnapshotBuffer: blend the two snapshots around the render time, extrapolate up to
 * `maxExtrapolationMs` when starved, shortest-arc blending of angle columns; InterpolationDelay:
 * RFC 3550 jitter driven render delay, never below two snapshot intervals). @module
 */

export const MAX_BUFFERED_SNAPSHOTS = 32;
export const DEFAULT_MAX_EXTRAPOLATION_MS = 100.0;
export const MAX_INTERPOLATION_DELAY_MS = 500.0;
export const DEFAULT_DELAY_MARGIN_MS = 5.0;
const JITTER_MULTIPLIER = 2.0;
const JITTER_GAIN = 1 / 16;
const DELAY_RISE_GAIN = 0.25;
const DELAY_FALL_GAIN = 0.02;
const TWO_PI = 2 * Math.PI;

export const Status = Object.freeze({
  EMPTY: 'empty',
  INTERPOLATING: 'interpolating',
  EXTRAPOLATING: 'extrapolating',
  HOLDING_NEWEST: 'holding_newest',
  HOLDING_OLDEST: 'holding_oldest',
});

/** @typedef {{timeMs: number, netIds: Uint32Array, values: Float64Array}} BufferedSnapshot */
/** @typedef {{netIds: Uint32Array, values: Float64Array, status: string}} Sampled */

const remainder = (/** @type {number} */ a, /** @type {number} */ b) => a - b * Math.floor(a / b);

export class SnapshotBuffer {
  /**
   * @param {number} width columns per entity
   * @param {{capacity?: number, maxExtrapolationMs?: number, angleColumns?: number[]}} [options]
   */
  constructor(width, { capacity = MAX_BUFFERED_SNAPSHOTS, maxExtrapolationMs = DEFAULT_MAX_EXTRAPOLATION_MS, angleColumns = [] } = {}) {
    this.width = width;
    this.capacity = capacity;
    this.maxExtrapolationMs = maxExtrapolationMs;
    this.angleColumns = angleColumns;
    /** @type {BufferedSnapshot[]} */
    this.snapshots = [];
    this.starving = false;
    this.starvations = 0;
  }

  get length() {
    return this.snapshots.length;
  }

  get newestTimeMs() {
    return this.snapshots.length ? this.snapshots[this.snapshots.length - 1].timeMs : null;
  }

  /** @param {number} timeMs @param {Uint32Array} netIds @param {Float64Array} values */
  push(timeMs, netIds, values) {
    const newest = this.newestTimeMs;
    if (newest !== null && timeMs <= newest) return false;
    this.snapshots.push({ timeMs, netIds: netIds.slice(), values: values.slice() });
    if (this.snapshots.length > this.capacity) this.snapshots.shift();
    return true;
  }

  clear() {
    this.snapshots = [];
    this.starving = false;
  }

  /** @param {number} renderMs @returns {Sampled} */
  sample(renderMs) {
    const snaps = this.snapshots;
    if (!snaps.length) return { netIds: new Uint32Array(0), values: new Float64Array(0), status: Status.EMPTY };
    const newest = snaps[snaps.length - 1];
    if (renderMs > newest.timeMs) {
      if (!this.starving) this.starvations += 1;
      this.starving = true;
      if (snaps.length === 1) return held(newest, Status.HOLDING_NEWEST);
      const previous = snaps[snaps.length - 2];
      let ahead = renderMs - newest.timeMs;
      /** @type {string} */
      let status = Status.EXTRAPOLATING;
      if (ahead > this.maxExtrapolationMs) {
        ahead = this.maxExtrapolationMs;
        status = Status.HOLDING_NEWEST;
      }
      const alpha = 1 + ahead / (newest.timeMs - previous.timeMs);
      return { netIds: newest.netIds, values: this.blend(previous, newest, alpha), status };
    }
    this.starving = false;
    if (renderMs < snaps[0].timeMs) return held(snaps[0], Status.HOLDING_OLDEST);
    if (snaps.length === 1) return held(newest, Status.INTERPOLATING);
    let older = 0;
    while (older < snaps.length - 2 && snaps[older + 1].timeMs <= renderMs) older++;
    const a = snaps[older];
    const b = snaps[older + 1];
    const alpha = (renderMs - a.timeMs) / (b.timeMs - a.timeMs);
    return { netIds: b.netIds, values: this.blend(a, b, alpha), status: Status.INTERPOLATING };
  }

  /** `newer`'s rows, rows of entities also in `older` blended at `alpha`. */
  blend(/** @type {BufferedSnapshot} */ older, /** @type {BufferedSnapshot} */ newer, /** @type {number} */ alpha) {
    const w = this.width;
    const out = newer.values.slice();
    let i = 0;
    for (let j = 0; j < newer.netIds.length; j++) {
      const id = newer.netIds[j];
      while (i < older.netIds.length && older.netIds[i] < id) i++;
      if (i === older.netIds.length || older.netIds[i] !== id) continue;
      for (let c = 0; c < w; c++) {
        const start = older.values[i * w + c];
        out[j * w + c] = (1 - alpha) * start + alpha * newer.values[j * w + c];
      }
      for (const c of this.angleColumns) {
        const start = older.values[i * w + c];
        const end = start + remainder(newer.values[j * w + c] - start + Math.PI, TWO_PI) - Math.PI;
        out[j * w + c] = remainder((1 - alpha) * start + alpha * end + Math.PI, TWO_PI) - Math.PI;
      }
    }
    return out;
  }
}

/** @param {BufferedSnapshot} s @param {string} status @returns {Sampled} */
const held = (s, status) => ({ netIds: s.netIds, values: s.values.slice(), status });

export class InterpolationDelay {
  /** @param {number} nominalIntervalMs */
  constructor(nominalIntervalMs, { marginMs = DEFAULT_DELAY_MARGIN_MS, maxDelayMs = MAX_INTERPOLATION_DELAY_MS } = {}) {
    this.nominalIntervalMs = nominalIntervalMs;
    this.marginMs = marginMs;
    this.maxDelayMs = maxDelayMs;
    this.delayMs = this.defaultDelayMs;
    this.jitterMs = 0;
    this.intervalMs = nominalIntervalMs;
    /** @type {[number, number] | null} */
    this.last = null;
  }

  get defaultDelayMs() {
    return 2 * this.nominalIntervalMs;
  }

  /** @param {number} serverNowMs */
  renderTimeMs(serverNowMs) {
    return serverNowMs - this.delayMs;
  }

  /** @param {number} clientMs @param {number} serverMs */
  onSnapshotArrival(clientMs, serverMs) {
    const last = this.last;
    if (!Number.isFinite(clientMs) || !Number.isFinite(serverMs) || (last && serverMs <= last[1])) return this.delayMs;
    this.last = [clientMs, serverMs];
    if (!last) return this.delayMs;
    const gap = serverMs - last[1];
    const transitChange = clientMs - last[0] - gap;
    this.jitterMs += JITTER_GAIN * (Math.abs(transitChange) - this.jitterMs);
    this.intervalMs += JITTER_GAIN * (gap - this.intervalMs);
    const interval = Math.max(this.nominalIntervalMs, this.intervalMs);
    let target = Math.max(this.defaultDelayMs, 2 * interval, interval + JITTER_MULTIPLIER * this.jitterMs + this.marginMs);
    target = Math.min(target, this.maxDelayMs);
    const gain = target > this.delayMs ? DELAY_RISE_GAIN : DELAY_FALL_GAIN;
    this.delayMs = Math.max(this.defaultDelayMs, this.delayMs + gain * (target - this.delayMs));
    return this.delayMs;
  }
}
