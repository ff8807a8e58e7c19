/**
 * Clock sync from Ping/Pong, a mirror of astranet/net/clock.py: RFC 6298 smoothed RTT, an
 * NTP-style offset from the fastest quarter of a 32-sample window (slewed by 20 % per sample,
 * stepped beyond 1 s), and the server tick from the window's median tick origin. Pure: the
 * caller passes its own monotonic milliseconds. @module
 */

export const MAX_CLOCK_SAMPLES = 32;
export const BEST_SAMPLES_FRACTION = 0.25;
export const OFFSET_GAIN = 0.2;
export const OFFSET_STEP_MS = 1000.0;
export const MAX_RTT_MS = 60000.0;
const RTT_ALPHA = 1 / 8;
const RTT_BETA = 1 / 4;

/** @param {number[]} values */
function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export class RttEstimator {
  constructor() {
    /** @type {number | null} */ this.srttMs = null;
    /** @type {number | null} */ this.rttvarMs = null;
    this.samples = 0;
  }

  /** @param {number} rttMs @returns {boolean} false (ignored) when impossible */
  addSample(rttMs) {
    if (!(Number.isFinite(rttMs) && rttMs >= 0 && rttMs <= MAX_RTT_MS)) return false;
    if (this.srttMs === null || this.rttvarMs === null) {
      this.srttMs = rttMs;
      this.rttvarMs = rttMs / 2;
    } else {
      this.rttvarMs = (1 - RTT_BETA) * this.rttvarMs + RTT_BETA * Math.abs(this.srttMs - rttMs);
      this.srttMs = (1 - RTT_ALPHA) * this.srttMs + RTT_ALPHA * rttMs;
    }
    this.samples += 1;
    return true;
  }
}

export class ServerClock {
  /** @param {number} tickHz */
  constructor(tickHz, window = MAX_CLOCK_SAMPLES) {
    this.tickHz = tickHz;
    this.window = window;
    this.rtt = new RttEstimator();
    /** @type {{send: number, recv: number, server: number, tick: number, rtt: number, offset: number}[]} */
    this.samples = [];
    /** @type {number | null} */ this.offsetMs = null;
    /** @type {number | null} */ this.tickOriginMs = null;
  }

  get synced() {
    return this.offsetMs !== null;
  }

  /**
   * Fold in one Pong; false if the sample is impossible.
   * @param {number} clientSendMs @param {number} clientRecvMs
   * @param {number} serverTimeMs @param {number} serverTick
   */
  addPong(clientSendMs, clientRecvMs, serverTimeMs, serverTick) {
    const rtt = clientRecvMs - clientSendMs;
    const offset = serverTimeMs - (clientSendMs + clientRecvMs) / 2;
    if (!(Number.isFinite(offset) && serverTick >= 0)) return false;
    if (!this.rtt.addSample(rtt)) return false;
    this.samples.push({ send: clientSendMs, recv: clientRecvMs, server: serverTimeMs, tick: serverTick, rtt, offset });
    if (this.samples.length > this.window) this.samples.shift();
    const best = Math.max(1, Math.floor(this.samples.length * BEST_SAMPLES_FRACTION));
    const fastest = [...this.samples].reverse().sort((a, b) => a.rtt - b.rtt).slice(0, best);
    const target = median(fastest.map((s) => s.offset));
    if (this.offsetMs === null || Math.abs(target - this.offsetMs) > OFFSET_STEP_MS) this.offsetMs = target;
    else this.offsetMs += OFFSET_GAIN * (target - this.offsetMs);
    const tickMs = 1000 / this.tickHz;
    this.tickOriginMs = median(this.samples.map((s) => s.server - (s.tick + 0.5) * tickMs));
    return true;
  }

  /** @param {number} nowClientMs */
  serverTimeMs(nowClientMs) {
    return nowClientMs + /** @type {number} */ (this.offsetMs);
  }

  /** The server's current tick as a float. @param {number} nowClientMs */
  estimatedServerTick(nowClientMs) {
    return ((this.serverTimeMs(nowClientMs) - /** @type {number} */ (this.tickOriginMs)) * this.tickHz) / 1000;
  }
}
