/**
 * Wire messages of protocol v1 (docs/protocol.md): msgpack maps with string keys, `t` first.
 *
 * Encoding writes the fields in the order of docs/protocol.md's tables, so a message encodes
 * to the same bytes as astranet/net/messages.py's `encode` (tested against Python vectors).
 * Decoding of server messages checks every field's type and range and throws
 * `ServerMessageError` rather than returning a half-built message; unknown keys are ignored.
 * @module
 */

import { decode, encode as msgpackEncode } from '@msgpack/msgpack';
import { AstranetError } from './errors.js';

export const PROTOCOL_VERSION = 1;
/** Largest WebSocket message either side sends (64 KiB, WIRE rule 6). */
export const MAX_MESSAGE_BYTES = 65536;
export const U32_MAX = 0xffffffff;

/** A server message that does not decode: the client stops talking to that server (1002). */
export class ServerMessageError extends AstranetError {}

/**
 * @param {Record<string, unknown>} message a plain object whose first key is `t`
 * @returns {Uint8Array}
 */
export function encode(message) {
  return msgpackEncode(message, { ignoreUndefined: true });
}

/**
 * Hello; `compact` asks for the compact Snapshot envelope (WIRE A1), `schema` carries this
 * client's schema fingerprint (the server refuses another with `schema_mismatch`).
 * @param {{compact?: boolean, schema?: number, token?: string}} [options]
 */
export function hello({ compact = false, schema, token } = {}) {
  /** @type {Record<string, unknown>} */
  const message = { t: 'Hello', protocol: PROTOCOL_VERSION };
  if (compact) message.compact = true;
  if (schema !== undefined) message.schema = schema;
  if (token !== undefined) message.token = token;
  return message;
}
export const findOrCreate = (/** @type {string} */ region, /** @type {string} */ gameMode, partySize = 1) => ({
  t: 'FindOrCreate',
  region,
  game_mode: gameMode,
  party_size: partySize,
});
/** @param {string} roomId @param {Uint8Array | null} [seatToken] */
export const joinRoom = (roomId, seatToken = null) => ({ t: 'JoinRoom', room_id: roomId, seat_token: seatToken });
/** @param {string} roomId @param {string} playerId @param {Uint8Array} resumeToken */
export const resume = (roomId, playerId, resumeToken) => ({
  t: 'Resume',
  room_id: roomId,
  player_id: playerId,
  resume_token: resumeToken,
});
/**
 * @param {number} seq @param {number} tickMs @param {Uint8Array} blob @param {Uint8Array} sig
 * @param {number | null} [ack] WIRE A1: a folded Ack
 * @param {[number, number] | null} [view] lag compensation: (view_tick, view_frac)
 */
export function inputFrame(seq, tickMs, blob, sig, ack = null, view = null) {
  /** @type {Record<string, unknown>} */
  const message = { t: 'InputFrame', seq, tick_ms: tickMs, input_blob: blob, sig };
  if (ack !== null) message.ack = ack;
  if (view) {
    message.view_tick = view[0];
    message.view_frac = view[1];
  }
  return message;
}
export const ackMessage = (/** @type {number} */ snapshotId) => ({ t: 'Ack', snapshot_id: snapshotId });
export const ping = (/** @type {number} */ nonce, /** @type {number} */ clientTimeMs) => ({
  t: 'Ping',
  nonce,
  client_time_ms: clientTimeMs,
});
export const leave = () => ({ t: 'Leave' });

// -- decoding server messages ----------------------------------------------------------------

const isInt = (/** @type {unknown} */ v) => typeof v === 'number' && Number.isInteger(v);
/** @type {Record<string, (v: unknown) => boolean>} */
const CHECK = {
  u32: (v) => isInt(v) && /** @type {number} */ (v) >= 0 && /** @type {number} */ (v) <= U32_MAX,
  u64: (v) => (isInt(v) && /** @type {number} */ (v) >= 0) || (typeof v === 'bigint' && v >= 0n),
  int: (v) => isInt(v),
  str: (v) => typeof v === 'string',
  bin: (v) => v instanceof Uint8Array,
  bool: (v) => typeof v === 'boolean',
};

/** Field types of each server message; a `?` suffix marks optional (absent or nil). */
const SERVER_MESSAGES = {
  HelloAck: { protocol: 'u32', compact: 'bool?' },
  MatchResult: { room_id: 'str', url: 'str?', seat_token: 'bin?', party_token: 'bin?' },
  JoinAccepted: {
    room_id: 'str',
    player_id: 'str',
    tick_hz: 'int',
    session_key: 'bin',
    resume_token: 'bin',
    entity: 'u32?',
    schema: 'u32?',
  },
  Snapshot: { id: 'u32', server_tick: 'u64', base_id: 'u32?', compressed: 'bool', payload: 'bin', last_input_seq: 'u32?' },
  Pong: { nonce: 'u64', client_time_ms: 'u64', server_time_ms: 'u64', server_tick: 'u64' },
  RateLimited: { retry_after_ms: 'u32' },
  ProtocolError: { code: 'str', message: 'str?' },
};

/**
 * @typedef {{t: string, [field: string]: any}} ServerMessage
 */

/**
 * Decode and validate one server message.
 * @param {Uint8Array} data @returns {ServerMessage}
 */
export function decodeServerMessage(data) {
  if (data.length > MAX_MESSAGE_BYTES) throw new ServerMessageError('server message over 64 KiB');
  if (data[0] === COMPACT_MARKER) return decodeCompactSnapshot(data);
  let value;
  try {
    value = decode(data, { useBigInt64: false });
  } catch (exc) {
    throw new ServerMessageError(`undecodable msgpack: ${/** @type {Error} */ (exc).message}`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) {
    throw new ServerMessageError('server message is not a map');
  }
  const map = /** @type {Record<string, unknown>} */ (value);
  const fields = /** @type {Record<string, Record<string, string>>} */ (SERVER_MESSAGES)[/** @type {string} */ (map.t)];
  if (typeof map.t !== 'string' || !fields) throw new ServerMessageError(`unknown server message type ${String(map.t)}`);
  /** @type {ServerMessage} */
  const message = { t: map.t };
  for (const [name, spec] of Object.entries(fields)) {
    const optional = spec.endsWith('?');
    const kind = optional ? spec.slice(0, -1) : spec;
    const v = map[name];
    if (v === undefined || v === null) {
      if (!optional) throw new ServerMessageError(`${map.t}.${name} is missing`);
      message[name] = null;
    } else if (!CHECK[kind](v)) {
      throw new ServerMessageError(`${map.t}.${name} must be ${kind}`);
    } else {
      message[name] = v;
    }
  }
  if (message.t === 'JoinAccepted' && message.session_key.length !== 32) {
    throw new ServerMessageError('JoinAccepted.session_key must be 32 bytes');
  }
  if (message.t === 'ProtocolError' && message.message === null) message.message = '';
  return message;
}

// -- WIRE A1 compact Snapshot envelope (docs/protocol.md "A1: compact Snapshot envelope") ----

/** msgpack never produces 0xc1, so no map envelope starts with it. */
export const COMPACT_MARKER = 0xc1;
const COMPACT_COMPRESSED = 0x01;
const COMPACT_BASE = 0x02;
const COMPACT_LAST_INPUT = 0x04;

/**
 * @param {Uint8Array} data @param {number} pos @param {number} maxBytes @param {string} name
 * @returns {[number, number]} value and the position after it
 */
function readLeb128(data, pos, maxBytes, name) {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < maxBytes; i++) {
    if (pos >= data.length) throw new ServerMessageError(`compact Snapshot: truncated ${name}`);
    const byte = data[pos++];
    value += (byte & 0x7f) * scale;
    scale *= 128;
    if (!(byte & 0x80)) return [value, pos];
  }
  throw new ServerMessageError(`compact Snapshot: ${name} longer than ${maxBytes} bytes`);
}

/** @param {Uint8Array} data @returns {ServerMessage} */
export function decodeCompactSnapshot(data) {
  if (data.length < 2) throw new ServerMessageError('compact Snapshot: truncated');
  const flags = data[1];
  if (flags & ~(COMPACT_COMPRESSED | COMPACT_BASE | COMPACT_LAST_INPUT)) {
    throw new ServerMessageError(`compact envelope of unknown kind (flags ${flags})`);
  }
  let pos = 2;
  let id;
  let tick;
  [id, pos] = readLeb128(data, pos, 5, 'id');
  [tick, pos] = readLeb128(data, pos, 10, 'server_tick');
  if (id > U32_MAX) throw new ServerMessageError('compact Snapshot: id out of range');
  let baseId = null;
  if (flags & COMPACT_BASE) {
    let delta;
    [delta, pos] = readLeb128(data, pos, 5, 'base delta');
    if (delta > id) throw new ServerMessageError('compact Snapshot: base delta above id');
    baseId = id - delta;
  }
  let lastInputSeq = null;
  if (flags & COMPACT_LAST_INPUT) {
    [lastInputSeq, pos] = readLeb128(data, pos, 5, 'last_input_seq');
    if (lastInputSeq > U32_MAX) throw new ServerMessageError('compact Snapshot: last_input_seq out of range');
  }
  return {
    t: 'Snapshot',
    id,
    server_tick: tick,
    base_id: baseId,
    compressed: (flags & COMPACT_COMPRESSED) !== 0,
    payload: data.subarray(pos),
    last_input_seq: lastInputSeq,
  };
}
