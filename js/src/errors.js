/**
 * One error tree for the browser client (mirrors astranet/errors.py):
 *
 *   AstranetError
 *   ├── InvalidState              the API was used in the wrong phase
 *   ├── SnapshotDecodeError       a payload that does not decode (never applied)
 *   │   └── DesyncError           decoded state differs from the server's checksum
 *   ├── SchemaMismatch            the server replicates another schema than this client's
 *   ├── ServerProtocolError       a ProtocolError{code, message} from the server
 *   │   └── one class per code    (ExpectedHello, ProtocolMismatch, Malformed, ...)
 *   ├── ConnectionClosed          the WebSocket closed; `code`, `reason`
 *   │   └── one class per code    (NormalClosure 1000, GoingAway 1001, ...)
 *   └── ConnectFailed             no connection could be made (after backoff gave up)
 *
 * `protocolErrorFor(code, message)` and `connectionClosedFor(code, reason)` build the right
 * subclass; an unknown code gets the base class, so new server codes never crash a client.
 * @module
 */

export class AstranetError extends Error {
  /** @param {string} message @param {{cause?: unknown}} [options] */
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class InvalidState extends AstranetError {}
export class SnapshotDecodeError extends AstranetError {}
export class DesyncError extends SnapshotDecodeError {}
export class ConnectFailed extends AstranetError {}

/** The server and this client disagree on the replicated schema (fingerprints differ). */
export class SchemaMismatch extends AstranetError {
  /**
   * @param {number} clientFingerprint
   * @param {number | null} serverFingerprint
   * @param {string} [detail]
   */
  constructor(clientFingerprint, serverFingerprint, detail = '') {
    const hex = (/** @type {number|null} */ v) =>
      v === null ? 'unknown' : `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
    super(
      `schema mismatch: this client was built for schema ${hex(clientFingerprint)}, ` +
        `the server replicates ${hex(serverFingerprint)}` +
        (detail ? ` (${detail})` : '') +
        '; load the page for this server (GET /schema shows its schema)',
    );
    this.clientFingerprint = clientFingerprint;
    this.serverFingerprint = serverFingerprint;
  }
}

/** A `ProtocolError{code, message}` the server sent. */
export class ServerProtocolError extends AstranetError {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message ? `${code}: ${message}` : code);
    /** The wire code (docs/protocol.md, "Error codes"). */
    this.code = code;
    this.serverMessage = message;
  }
}

export class ExpectedHello extends ServerProtocolError {}
export class ProtocolMismatch extends ServerProtocolError {}
export class Malformed extends ServerProtocolError {}
export class UnknownType extends ServerProtocolError {}
export class BadRequest extends ServerProtocolError {}
export class UnknownRegion extends ServerProtocolError {}
export class RoomNotFound extends ServerProtocolError {}
export class RoomFull extends ServerProtocolError {}
export class ResumeDenied extends ServerProtocolError {}
export class BadSignature extends ServerProtocolError {}
export class Replay extends ServerProtocolError {}
export class SeatExpired extends ServerProtocolError {}
export class RoomLost extends ServerProtocolError {}
export class Unauthorized extends ServerProtocolError {}
export class Busy extends ServerProtocolError {}
export class Unavailable extends ServerProtocolError {}
/** `game_error`: the game's own code failed serving this join (nothing was kept). */
export class GameError extends ServerProtocolError {}
/** `room_failed`: the room's game code raised; the room is gone. */
export class RoomFailed extends ServerProtocolError {}
/** `schema_mismatch`: the server refused our Hello.schema. */
export class SchemaRefused extends ServerProtocolError {}

/** Every ProtocolError code of docs/protocol.md and WIRE A2-A4, to its class. */
export const PROTOCOL_ERRORS = Object.freeze({
  expected_hello: ExpectedHello,
  protocol_mismatch: ProtocolMismatch,
  malformed: Malformed,
  unknown_type: UnknownType,
  bad_request: BadRequest,
  unknown_region: UnknownRegion,
  room_not_found: RoomNotFound,
  room_full: RoomFull,
  resume_denied: ResumeDenied,
  bad_signature: BadSignature,
  replay: Replay,
  seat_expired: SeatExpired,
  room_lost: RoomLost,
  unauthorized: Unauthorized,
  busy: Busy,
  unavailable: Unavailable,
  game_error: GameError,
  room_failed: RoomFailed,
  schema_mismatch: SchemaRefused,
});

/** @param {string} code @param {string} message @returns {ServerProtocolError} */
export function protocolErrorFor(code, message) {
  const Kind = /** @type {Record<string, typeof ServerProtocolError>} */ (PROTOCOL_ERRORS)[code];
  return Kind ? new Kind(code, message) : new ServerProtocolError(code, message);
}

/** The WebSocket closed. `code` is the close code, `reason` its text. */
export class ConnectionClosed extends AstranetError {
  /** @param {number} code @param {string} reason */
  constructor(code, reason) {
    super(`connection closed ${code}${reason ? `: ${reason}` : ''}`);
    this.code = code;
    this.reason = reason;
  }

  /** Whether a Resume is worth trying (the network or the server process failed). */
  get resumable() {
    return RESUMABLE_CLOSES.has(this.code);
  }
}

export class NormalClosure extends ConnectionClosed {} // 1000: Leave
export class GoingAway extends ConnectionClosed {} // 1001: shutdown, room closed
export class ProtocolViolation extends ConnectionClosed {} // 1002: expected Hello, mismatch
export class AbnormalClosure extends ConnectionClosed {} // 1006: no close frame (network)
export class PolicyViolation extends ConnectionClosed {} // 1008: kick (sig, replay, flood)
export class MessageTooBig extends ConnectionClosed {} // 1009
export class InternalError extends ConnectionClosed {} // 1011: room failed
export class ServiceRestart extends ConnectionClosed {} // 1012: the node is restarting (resume)
export class TryAgainLater extends ConnectionClosed {} // 1013: too many connections

export const CLOSE_CODES = Object.freeze({
  1000: NormalClosure,
  1001: GoingAway,
  1002: ProtocolViolation,
  1006: AbnormalClosure,
  1008: PolicyViolation,
  1009: MessageTooBig,
  1011: InternalError,
  1012: ServiceRestart,
  1013: TryAgainLater,
});

/** Close codes after which resuming makes sense (as astranet.client.connection). */
export const RESUMABLE_CLOSES = new Set([1001, 1006, 1011, 1012, 1013, 1014]);

/** @param {number} code @param {string} reason @returns {ConnectionClosed} */
export function connectionClosedFor(code, reason) {
  const Kind = /** @type {Record<number, typeof ConnectionClosed>} */ (CLOSE_CODES)[code];
  return Kind ? new Kind(code, reason) : new ConnectionClosed(code, reason);
}
