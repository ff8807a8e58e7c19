/**
 * The co-op game's client half in JavaScript: its 4-byte input blob and the player step, a
 * line-for-line port of astranet/examples/coop/input.py and sim.py `step_avatar`, so the
 * browser predicts its avatar bit-exactly (reconciliation error 0).
 *
 * Determinism: numpy does the server's step in float64 and stores float32; JavaScript numbers
 * are float64, so every operation is written in the same order as the Python expression,
 * `np.round`/`np.rint` become round-half-to-even (`roundHalfEven`, not Math.round), and the
 * store's float32 is `Math.fround`. js/test/coop.test.js replays 300 random Python steps.
 *
 * State row (the schema's flat layout): [pos.x, pos.y, kind, heading, hp, cooldown, score, wave].
 * @module
 */

export const PLAYER_SPEED = 12.0;
export const ARENA = 60.0;
export const GRID = 64;
export const AIM_BITS = 8;
export const FIRE_INTERVAL_INPUTS = 6;
export const MAX_MOVE_SQ = 127 * 127;
export const FIRE = 0x01;
export const INPUT_BYTES = 4;
const AIM_STEPS = 256;
const TAU = 2.0 * Math.PI;
export const KIND = Object.freeze({ PLAYER: 0, DRONE: 1, PROJECTILE: 2, TEAM: 3 });

/** Columns of the coop state row (StateLayout of SCHEMA). */
export const COL = Object.freeze({ X: 0, Y: 1, KIND: 2, HEADING: 3, HP: 4, COOLDOWN: 5, SCORE: 6, WAVE: 7 });

/** numpy's rint/round: ties go to the even neighbour, and the sign of zero is kept. @param {number} v */
export function roundHalfEven(v) {
  const floor = Math.floor(v);
  const diff = v - floor;
  const rounded = diff < 0.5 ? floor : diff > 0.5 ? floor + 1 : floor % 2 === 0 ? floor : floor + 1;
  return rounded === 0 && (v < 0 || Object.is(v, -0)) ? -0 : rounded;
}

/** @typedef {{moveX: number, moveY: number, aim: number, fire: boolean}} Command */

export class InputError extends Error {}

/** @param {Uint8Array} blob @returns {Command} */
export function decodeInput(blob) {
  if (!(blob instanceof Uint8Array) || blob.length !== INPUT_BYTES) throw new InputError(`coop input is ${INPUT_BYTES} bytes`);
  if (blob[3] & ~FIRE) throw new InputError('coop input sets reserved button bits');
  const toInt8 = (/** @type {number} */ b) => (b > 127 ? b - 256 : b);
  return { moveX: toInt8(blob[0]), moveY: toInt8(blob[1]), aim: blob[2], fire: (blob[3] & FIRE) !== 0 };
}

/** @param {Command} c @returns {Uint8Array} */
export function encodeCommand(c) {
  return Uint8Array.of(c.moveX & 0xff, c.moveY & 0xff, c.aim & 0xff, c.fire ? FIRE : 0);
}

/**
 * The blob for a direction (clamped to the unit disc), an aim angle and the fire button:
 * input.py `encode_input`.
 * @param {number} dx @param {number} dy @param {number} aimRadians @param {boolean} fire
 */
export function encodeInput(dx, dy, aimRadians = 0, fire = false) {
  if (!Number.isFinite(dx) || !Number.isFinite(dy)) dx = dy = 0;
  const length = Math.hypot(dx, dy);
  if (length > 1) {
    dx /= length;
    dy /= length;
  }
  const moveX = Math.max(-127, Math.min(127, Math.trunc(dx * 127)));
  const moveY = Math.max(-127, Math.min(127, Math.trunc(dy * 127)));
  const turns = Number.isFinite(aimRadians) ? aimRadians / TAU : 0;
  const aim = ((roundHalfEven((turns - Math.floor(turns)) * AIM_STEPS) % AIM_STEPS) + AIM_STEPS) % AIM_STEPS;
  return encodeCommand({ moveX, moveY, aim, fire });
}

export const STAND_STILL = Object.freeze({ moveX: 0, moveY: 0, aim: 0, fire: false });

/** components.py snap_pos then the float32 store. @param {number} v */
const snapPos = (v) => Math.fround(roundHalfEven(v * GRID) / GRID);

/** components.py snap_heading: quantize_angle then dequantize_angle (float32). @param {number} radians */
export function snapHeading(radians) {
  let turns = radians / TAU;
  if (!Number.isFinite(turns)) turns = 0;
  const full = 1 << AIM_BITS;
  const code = ((roundHalfEven((turns - Math.floor(turns)) * full) % full) + full) % full;
  const signed = code >= full / 2 ? code - full : code;
  return Math.fround(signed * (TAU / full));
}

/** game.py fire_ready on the predicted row. @param {Float64Array} state */
export const fireReady = (state) => state[COL.HP] > 0 && state[COL.COOLDOWN] === 0;

/** The JsGame of js/src/world.js for the coop game. */
export const coopGame = {
  decodeInput,
  emptyInput: () => STAND_STILL,
  /** game.py check_input. @param {Float64Array} state @param {Command} c */
  checkInput(state, c) {
    if (c.moveX * c.moveX + c.moveY * c.moveY > MAX_MOVE_SQ) return 'impossible speed';
    if (c.fire && !fireReady(state) && state[COL.HP] > 0) return 'fire rate';
    return null;
  },
  /**
   * sim.py step_avatar on the avatar's own row, in place (projectiles are the server's).
   * @param {Float64Array} state @param {Command} c @param {number} dtS
   */
  applyInput(state, c, dtS) {
    if (state[COL.HP] <= 0) return;
    const scale = PLAYER_SPEED * dtS;
    const x = state[COL.X] + (c.moveX / 127.0) * scale;
    const y = state[COL.Y] + (c.moveY / 127.0) * scale;
    state[COL.X] = snapPos(Math.min(ARENA, Math.max(-ARENA, x)));
    state[COL.Y] = snapPos(Math.min(ARENA, Math.max(-ARENA, y)));
    state[COL.HEADING] = snapHeading(c.aim * (TAU / AIM_STEPS));
    const fired = c.fire && state[COL.COOLDOWN] === 0;
    state[COL.COOLDOWN] = fired ? FIRE_INTERVAL_INPUTS - 1 : Math.max(state[COL.COOLDOWN] - 1, 0);
  },
};
