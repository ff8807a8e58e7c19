/**
 * The client contract: the per-frame types the client systems share. A one-to-one mirror of
 * astranet/systems/contract.py (same names, fields in camelCase); change both together.
 *
 *   Python (astranet.systems.contract)   JavaScript (this module)
 *   ClientLink (Protocol)                ClientLink (typedef: clockEstimate, drainSnapshots,
 *                                        ack, sendInput) — implemented by GameClient
 *   ClockEstimate                        ClockEstimate
 *   ReceivedSnapshot                     ReceivedSnapshot
 *   AppliedSnapshot                      AppliedSnapshot
 *   ClientFrame                          ClientFrame
 *   LocalPlayer                          LocalPlayer
 * @module
 */

/**
 * @typedef {object} ClockEstimate the network shell's view of the server clock at one instant
 * @property {number | null} serverTick estimated current server tick (float), null before a Pong
 * @property {number | null} rttMs RFC 6298 smoothed RTT
 * @property {number | null} rttvarMs RFC 6298 RTT variation
 * @property {number | null} tickHz from JoinAccepted
 */

/**
 * @typedef {object} ReceivedSnapshot a snapshot as the shell hands it over (wire fields copied)
 * @property {number} snapshotId
 * @property {number} serverTick
 * @property {number | null} baseId
 * @property {boolean} compressed
 * @property {Uint8Array} payload
 * @property {number | null} lastInputSeq
 * @property {number} arrivalMs client monotonic ms when it was read off the socket
 * @property {number} epoch session number: increases on every (re)join
 * @property {number | null} entity the local avatar's net id in that session
 */

/**
 * @typedef {object} AppliedSnapshot a snapshot that became the replica's current state
 * @property {number} snapshotId
 * @property {number} serverTick
 * @property {number | null} lastInputSeq
 * @property {number} arrivalMs
 * @property {Uint32Array} netIds ascending
 * @property {Float64Array} rows n x width flat state rows
 */

/**
 * @typedef {object} ClientLink what the client systems need from the network shell
 * @property {(nowMs: number) => ClockEstimate} clockEstimate
 * @property {() => ReceivedSnapshot[]} drainSnapshots
 * @property {(snapshotId: number) => void} ack
 * @property {(blob: Uint8Array) => number | null} sendInput
 * @property {(view: [number, number] | null) => void} [setView] optional: the view the next
 *   inputs state (lag compensation), set by ClientWorld after each frame
 */

/** The one argument every client system receives per rendered frame. */
export class ClientFrame {
  /** @param {number} nowMs @param {number} dtS */
  constructor(nowMs, dtS) {
    this.nowMs = nowMs;
    this.dtS = dtS;
    /** @type {number | null} */ this.serverTick = null;
    /** @type {number | null} */ this.rttMs = null;
    /** @type {number | null} */ this.rttvarMs = null;
    /** @type {number | null} */ this.tickMs = null;
    /** @type {number | null} tick time of a snapshot arriving now */
    this.arrivalTimeMs = null;
    /** @type {AppliedSnapshot[]} snapshots applied this frame, oldest first */
    this.applied = [];
    /** True on the first frame that sees a new session (after a reconnect). */
    this.reconnected = false;
  }
}

/** The client's predicted avatar and what it remembers about it. */
export class LocalPlayer {
  /** @param {import('./prediction.js').PredictionHistory} history @param {number} width */
  constructor(history, width) {
    this.history = history;
    /** @type {number | null} the avatar (JoinAccepted.entity) */
    this.netId = null;
    /** The predicted store holds the avatar. */
    this.ready = false;
    /** The avatar's current predicted flat state (the JS world predicts one row). */
    this.stateRow = new Float64Array(width);
  }

  state() {
    return this.stateRow;
  }
}
