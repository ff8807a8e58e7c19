/**
 * ClientWorld: the client systems of astranet/systems run in the same order once per rendered
 * frame (a mirror of astranet/client/world.py; no esper in the browser, the stages are plain
 * method calls):
 *
 *   RECEIVE     clockSync        the frame's server clock estimate (contract ClientFrame)
 *               receiveSnapshots snapshots -> replica, ack, frame.applied
 *   RECONCILE   reconcile        compare at last_input_seq; rewind + replay on a mismatch
 *   PREDICT     predict          one input per server tick: send, decode/check, apply, record
 *   INTERPOLATE interpolate      remote entities at render time + the local avatar -> view
 *
 * The game supplies a JsGame (docs/browser.md): the same input decoding, sanity check and
 * player step as the server, acting on the avatar's flat state row. The step must be
 * bit-identical to the server's (float64 like numpy, round-half-even, Math.fround where the
 * server stores float32), which is what makes the reconciliation error exactly 0.
 * @module
 */

import { ClientFrame, LocalPlayer } from './contract.js';
import { SnapshotDecodeError } from './errors.js';
import { InterpolationDelay, SnapshotBuffer, Status } from './interpolation.js';
import { CorrectionSmoother, PredictionHistory, comparePrediction } from './prediction.js';
import { Replica, rowOf } from './replica.js';

/** The server banks at most 3 inputs of credit per player (systems/input_ingestion.py). */
export const MAX_INPUT_STEPS_PER_FRAME = 3;
/**
 * Input pacing: at most this many inputs more than one RTT's worth may be unapplied by the
 * server. The server queues 8 inputs per player (systems/input_ingestion.py) and drops the
 * oldest beyond that, which the client cannot predict; when the server falls behind (a loaded
 * host skips ticks) the client holds its input instead. A held step is neither sent nor
 * predicted, so the prediction stays exact; the server would have had no input for it anyway.
 */
export const MAX_INPUT_LEAD = 4;
/**
 * Inputs unapplied beyond one RTT even when the server keeps up: the tick an input waits for
 * and the frame that reads its snapshot (one each).
 */
export const INPUT_PIPELINE_SLACK = 2;

/** view_frac counts 1/65536 of a tick (astranet/replication/rewind.py VIEW_FRAC_ONE). */
export const VIEW_FRAC_ONE = 1 << 16;

/** Python's round() (half to even) of a non-negative float. @param {number} v */
function roundHalfEven(v) {
  const floor = Math.floor(v);
  const diff = v - floor;
  return diff < 0.5 ? floor : diff > 0.5 ? floor + 1 : floor % 2 === 0 ? floor : floor + 1;
}

/** The fixed-point view (ticks x 65536) nearest to `renderMs`: rewind.py view_q_of. */
export function viewQOf(/** @type {number} */ renderMs, /** @type {number} */ tickMs) {
  return Math.max(0, roundHalfEven((renderMs / tickMs) * VIEW_FRAC_ONE));
}

/** Mispredictions kept with their columns for diagnosis. */
export const MAX_MISMATCH_SAMPLES = 32;

/**
 * @typedef {object} JsGame the game's client half, mirroring astranet.game.Game
 * @property {(blob: Uint8Array) => any} decodeInput throws on a blob the server would refuse
 * @property {() => any} emptyInput what the server applies instead
 * @property {(state: Float64Array, command: any) => string | null} checkInput the server's sanity hook
 * @property {(state: Float64Array, command: any, dtS: number) => void} applyInput the player step, in place
 */

/** @typedef {{netIds: Uint32Array, values: Float64Array, status: string, renderTimeMs: number | null, localNetId: number | null}} RenderView */

export class ClientWorld {
  /**
   * @param {{schema: import('./schema.js').Schema, game: JsGame,
   *   link: import('./contract.js').ClientLink, inputSource: () => Uint8Array, tickHz?: number,
   *   smoothingMs?: number, tolerance?: number}} options
   */
  constructor({ schema, game, link, inputSource, tickHz = 30, smoothingMs = 100, tolerance = 0 }) {
    this.schema = schema;
    this.game = game;
    this.link = link;
    this.inputSource = inputSource;
    this.tickHz = tickHz;
    this.tolerance = tolerance;
    const width = schema.width;
    this.width = width;
    this.replica = new Replica(schema);
    this.local = new LocalPlayer(new PredictionHistory(width), width);
    this.smoother = new CorrectionSmoother(width, smoothingMs);
    const angles = schema.fields.filter((f) => f.encoding === 'Angle').flatMap((f) => Array.from({ length: f.size }, (_, i) => f.offset + i));
    this.buffer = new SnapshotBuffer(width, { angleColumns: angles });
    this.delay = new InterpolationDelay(1000 / tickHz);
    this.epoch = /** @type {number | null} */ (null);
    this.accumulatedS = 0;
    /** @type {[number, number] | null} */
    this.anchor = null;
    this.viewQ = 0;
    /** Highest last_input_seq a snapshot of this session reported (input pacing). */
    this.lastAppliedSeq = 0;
    this.baseRttMs = Infinity;
    this.stats = { compared: 0, exact: 0, rewinds: 0, replayedInputs: 0, maxError: 0, decodeFailures: 0, applied: 0, inputsSent: 0, stepsDropped: 0, inputsHeld: 0, frames: 0, sampled: 0, extrapolated: 0, mismatches: /** @type {{seq: number | null, columns: number[], server: number[], predicted: number[]}[]} */ ([]) };
    /** @type {RenderView} */
    this.view = { netIds: new Uint32Array(0), values: new Float64Array(0), status: Status.EMPTY, renderTimeMs: null, localNetId: null };
  }

  /** Run one frame; returns the view to draw. @param {number} nowMs @param {number} dtS */
  step(nowMs, dtS) {
    const frame = new ClientFrame(nowMs, dtS);
    this.clockSync(frame);
    this.receiveSnapshots(frame);
    this.reconcile(frame);
    this.predict(frame);
    this.interpolate(frame);
    // The next inputs say what the player saw in this frame (lag compensation).
    if (this.link.setView && frame.tickMs !== null && this.view.renderTimeMs !== null) {
      this.link.setView([Math.floor(this.viewQ / VIEW_FRAC_ONE), this.viewQ % VIEW_FRAC_ONE]);
    }
    return this.view;
  }

  /** @param {ClientFrame} frame */
  clockSync(frame) {
    const estimate = this.link.clockEstimate(frame.nowMs);
    frame.rttMs = estimate.rttMs;
    frame.rttvarMs = estimate.rttvarMs;
    if (estimate.tickHz === null) return;
    if (estimate.tickHz !== this.tickHz) {
      this.tickHz = estimate.tickHz;
      this.delay = new InterpolationDelay(1000 / estimate.tickHz);
    }
    frame.tickMs = 1000 / estimate.tickHz;
    frame.serverTick = estimate.serverTick;
    if (estimate.serverTick !== null && estimate.rttMs !== null) {
      frame.arrivalTimeMs = estimate.serverTick * frame.tickMs - estimate.rttMs / 2;
    }
  }

  /** @param {ClientFrame} frame */
  receiveSnapshots(frame) {
    for (const received of this.link.drainSnapshots()) {
      if (received.epoch !== this.epoch) {
        frame.reconnected = this.epoch !== null;
        this.epoch = received.epoch;
        this.local.netId = received.entity;
        if (frame.reconnected) this.replica.clear();
      }
      let update;
      try {
        update = this.replica.apply(received.snapshotId, received.baseId, received.payload, received.compressed, received.serverTick);
      } catch (exc) {
        if (!(exc instanceof SnapshotDecodeError)) throw exc;
        this.stats.decodeFailures += 1;
        this.lastDecodeError = exc;
        continue;
      }
      this.link.ack(received.snapshotId);
      if (!update.isLatest) continue;
      this.stats.applied += 1;
      frame.applied.push({
        snapshotId: received.snapshotId,
        serverTick: received.serverTick,
        lastInputSeq: received.lastInputSeq,
        arrivalMs: received.arrivalMs,
        netIds: update.snapshot.netIds,
        rows: this.replica.rows,
      });
    }
  }

  /** @param {ClientFrame} frame */
  reconcile(frame) {
    const local = this.local;
    // Seqs continue across a resume, so lastAppliedSeq stays valid in the new session.
    if (frame.reconnected) local.history.clear();
    if (!frame.applied.length || local.netId === null) return;
    const netId = local.netId;
    let rewind = frame.reconnected;
    for (const applied of frame.applied) {
      if (applied.lastInputSeq !== null) this.lastAppliedSeq = Math.max(this.lastAppliedSeq, applied.lastInputSeq);
      const serverState = rowOf(applied.netIds, applied.rows, this.width, netId);
      if (!serverState) continue;
      const outcome = comparePrediction(local.history, applied.lastInputSeq, serverState, { tolerance: this.tolerance });
      rewind ||= outcome.rewind;
      if (outcome.compared && Number.isFinite(outcome.error)) {
        this.stats.compared += 1;
        if (outcome.error <= this.tolerance) this.stats.exact += 1;
        else this.countMismatch(applied.lastInputSeq, serverState, outcome.predicted);
        this.stats.maxError = Math.max(this.stats.maxError, outcome.error);
      }
    }
    const before = local.ready ? local.stateRow.slice() : null;
    const latest = frame.applied[frame.applied.length - 1];
    const server = rowOf(latest.netIds, latest.rows, this.width, netId);
    local.ready = server !== null;
    if (!server) return;
    if (rewind || before === null) {
      local.stateRow = server.slice();
      const pending = local.history.pending();
      for (const entry of pending) {
        this.game.applyInput(local.stateRow, entry.command, 1 / this.tickHz);
        local.history.restate(entry.seq, local.stateRow);
      }
      this.stats.replayedInputs += pending.length;
    } else {
      local.stateRow = (local.history.newest?.state ?? before).slice();
    }
    if (rewind && before !== null) {
      this.smoother.correct(frame.nowMs, before, local.stateRow);
      this.stats.rewinds += 1;
    }
  }

  /**
   * Remember which columns a misprediction was in (stats.mismatches, the newest
   * MAX_MISMATCH_SAMPLES): damage or a downed player show in hp, a dropped input in pos.
   * @param {number | null} seq @param {Float64Array} server @param {Float64Array | null} predicted
   */
  countMismatch(seq, server, predicted) {
    if (!predicted) return;
    const columns = [];
    for (let c = 0; c < this.width; c++) if (server[c] !== predicted[c]) columns.push(c);
    this.stats.mismatches.push({ seq, columns, server: Array.from(server), predicted: Array.from(predicted) });
    if (this.stats.mismatches.length > MAX_MISMATCH_SAMPLES) this.stats.mismatches.shift();
  }

  /** @param {ClientFrame} frame */
  predict(frame) {
    const local = this.local;
    if (!local.ready || local.netId === null) {
      this.accumulatedS = 0;
      return;
    }
    const stepS = 1 / this.tickHz;
    this.accumulatedS += frame.dtS;
    let steps = Math.floor(this.accumulatedS / stepS);
    if (steps > MAX_INPUT_STEPS_PER_FRAME) {
      this.stats.stepsDropped += steps - MAX_INPUT_STEPS_PER_FRAME;
      this.accumulatedS -= (steps - MAX_INPUT_STEPS_PER_FRAME) * stepS;
      steps = MAX_INPUT_STEPS_PER_FRAME;
    }
    // The link's own RTT (the lowest smoothed RTT seen): a server that falls behind also
    // answers Pings late, and its inflated RTT must not buy it a longer queue.
    if (frame.rttMs !== null) this.baseRttMs = Math.min(this.baseRttMs, frame.rttMs);
    const rttSteps = Number.isFinite(this.baseRttMs) ? Math.ceil(this.baseRttMs / (stepS * 1000)) : 8;
    for (let i = 0; i < steps; i++) {
      this.accumulatedS -= stepS;
      const sent = local.history.newest?.seq ?? this.lastAppliedSeq;
      if (sent - this.lastAppliedSeq >= rttSteps + INPUT_PIPELINE_SLACK + MAX_INPUT_LEAD) {
        this.stats.inputsHeld += 1; // the server is behind: its queue would drop this input
        continue;
      }
      const blob = this.inputSource();
      const seq = this.link.sendInput(blob);
      if (seq === null) return;
      const command = this.decodeCommand(blob);
      this.game.applyInput(local.stateRow, command, stepS);
      local.history.record(seq, command, local.stateRow);
      this.stats.inputsSent += 1;
    }
  }

  /** The command the server will apply for `blob` (same decode and sanity rules). @param {Uint8Array} blob */
  decodeCommand(blob) {
    let command;
    try {
      command = this.game.decodeInput(blob);
    } catch {
      return this.game.emptyInput();
    }
    return this.game.checkInput(this.local.stateRow, command) === null ? command : this.game.emptyInput();
  }

  /** @param {ClientFrame} frame */
  interpolate(frame) {
    this.stats.frames += 1;
    if (frame.reconnected) this.buffer.clear();
    const tickMs = frame.tickMs ?? this.delay.nominalIntervalMs;
    for (const applied of frame.applied) {
      const stampMs = applied.serverTick * tickMs;
      this.delay.onSnapshotArrival(applied.arrivalMs, stampMs);
      if (this.buffer.push(stampMs, applied.netIds, applied.rows)) this.anchor = [stampMs, applied.arrivalMs];
    }
    let arrivingMs;
    if (frame.arrivalTimeMs !== null) arrivingMs = frame.arrivalTimeMs;
    else if (this.anchor) arrivingMs = this.anchor[0] + (frame.nowMs - this.anchor[1]);
    else return;
    // On the 1/65536-tick grid the server's rewind reproduces what is drawn, bit for bit.
    const viewQ = viewQOf(this.delay.renderTimeMs(arrivingMs), tickMs);
    const renderMs = (viewQ / VIEW_FRAC_ONE) * tickMs;
    this.viewQ = viewQ;
    const sampled = this.buffer.sample(renderMs);
    if (sampled.status !== Status.EMPTY) this.stats.sampled += 1;
    if (sampled.status === Status.EXTRAPOLATING || sampled.status === Status.HOLDING_NEWEST) this.stats.extrapolated += 1;
    let { netIds, values } = sampled;
    const local = this.local;
    if (local.ready && local.netId !== null) {
      const offset = this.smoother.offset(frame.nowMs);
      const shown = local.stateRow.map((v, i) => v + offset[i]);
      const w = this.width;
      let index = 0;
      while (index < netIds.length && netIds[index] < local.netId) index++;
      if (index < netIds.length && netIds[index] === local.netId) {
        values.set(shown, index * w);
      } else {
        const ids = new Uint32Array(netIds.length + 1);
        ids.set(netIds.subarray(0, index));
        ids[index] = local.netId;
        ids.set(netIds.subarray(index), index + 1);
        const vals = new Float64Array(values.length + w);
        vals.set(values.subarray(0, index * w));
        vals.set(shown, index * w);
        vals.set(values.subarray(index * w), index * w + w);
        netIds = ids;
        values = vals;
      }
    }
    this.view = { netIds, values, status: sampled.status, renderTimeMs: renderMs, localNetId: local.netId };
  }
}
