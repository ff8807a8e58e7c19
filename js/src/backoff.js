/**
 * Reconnect backoff, a mirror of astranet/net/backoff.py (proportional jitter, the default):
 * base = min(maxS, initialS * multiplier**attempt), delay uniform in [base * (1 - jitter), base];
 * `expired(elapsedS)` after `giveUpAfterS` (the 30 s a seat is held, WIRE rule 7). @module
 */

export class Backoff {
  /**
   * @param {{initialS?: number, maxS?: number, multiplier?: number, jitter?: number,
   *   giveUpAfterS?: number | null, random?: () => number}} [options]
   */
  constructor({ initialS = 0.1, maxS = 5.0, multiplier = 2.0, jitter = 0.5, giveUpAfterS = 30.0, random = Math.random } = {}) {
    this.initialS = initialS;
    this.maxS = maxS;
    this.multiplier = multiplier;
    this.jitter = jitter;
    this.giveUpAfterS = giveUpAfterS;
    this.random = random;
    this.attempt = 0;
  }

  /** @param {number} attempt */
  baseDelay(attempt) {
    return Math.min(this.maxS, this.initialS * this.multiplier ** Math.min(Math.max(attempt, 0), 64));
  }

  /** Seconds to wait before the next attempt; counts it. */
  nextDelay() {
    const base = this.baseDelay(this.attempt);
    this.attempt += 1;
    const low = base * (1 - this.jitter);
    return low + (base - low) * this.random();
  }

  /** @param {number} elapsedS */
  expired(elapsedS) {
    return this.giveUpAfterS !== null && elapsedS >= this.giveUpAfterS;
  }

  reset() {
    this.attempt = 0;
  }
}
