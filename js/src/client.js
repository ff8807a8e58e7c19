/**
 * GameClient: the browser's network shell (WebSocket I/O, timers) around the protocol.
 *
 * It does what astranet/client/connection.py does for Python: Hello (with the schema
 * fingerprint) and matchmaking, following WIRE A2 redirects (`MatchResult{url, seat_token}`:
 * reconnect to `url`, Hello, `JoinRoom{room_id, seat_token}`), checking `JoinAccepted.schema`,
 * signing every InputFrame (WebCrypto, chained so frames leave in seq order), acking
 * snapshots (folded into the InputFrame with `foldAcks`, WIRE A1), Ping/Pong clock sync and,
 * after an abrupt close, Resume with exponential backoff on the node that owns the room.
 * Every failure is a typed error from errors.js. It implements the ClientLink of contract.js.
 *
 * Events (`client.addEventListener(type, e => e.detail)`): `joined`, `reconnecting`,
 * `resumed`, `server-error` (a non-fatal ProtocolError, e.g. bad_signature under `warn`),
 * `rate-limited`, `closed` (detail: the ConnectionClosed or other error that ended it).
 * @module
 */

import { Backoff } from './backoff.js';
import { ServerClock } from './clock.js';
import {
  AstranetError,
  ConnectFailed,
  ConnectionClosed,
  InvalidState,
  SchemaMismatch,
  ServerProtocolError,
  connectionClosedFor,
  protocolErrorFor,
} from './errors.js';
import * as msg from './messages.js';
import { InputSigner } from './signing.js';

export const PING_INTERVAL_MS = 500; // 2 Pings/s: the rate-limit budget of WIRE rule 5
export const MAX_INBOX_SNAPSHOTS = 64; // 2 s at 30 Hz; older ones are safe to drop (unacked)
export const MAX_PINGS_IN_FLIGHT = 16;
export const MAX_REDIRECTS = 4; // a redirect to a redirect to ...: a misconfigured cluster

/**
 * @typedef {object} GameClientOptions
 * @property {string} url ws:// or wss:// of the server (or any node of a cluster)
 * @property {string} [region]
 * @property {string} [gameMode]
 * @property {number} [partySize]
 * @property {string} [roomId] join this room instead of FindOrCreate
 * @property {import('./schema.js').Schema | null} [schema] checked at join when given
 * @property {boolean} [foldAcks] fold acks into InputFrame (WIRE A1; default true)
 * @property {boolean} [compact] ask for the compact Snapshot envelope (WIRE A1; default true)
 * @property {boolean} [sendView] state the rendered view in every InputFrame (lag compensation; default true)
 * @property {boolean} [reconnect] Resume after an abrupt close (default true)
 * @property {Backoff} [backoff]
 * @property {string} [token] JWT for servers with authentication (WIRE A4)
 * @property {typeof WebSocket} [WebSocketImpl]
 * @property {() => number} [now] monotonic ms (default performance.now)
 */

export class GameClient extends EventTarget {
  /** @param {GameClientOptions} options */
  constructor(options) {
    super();
    this.options = { region: 'us-east', gameMode: 'coop', partySize: 1, reconnect: true, foldAcks: true, compact: true, sendView: true, ...options };
    this.now = options.now ?? (() => performance.now());
    this.WebSocketImpl = options.WebSocketImpl ?? globalThis.WebSocket;
    this.backoff = options.backoff ?? new Backoff();
    /** @type {WebSocket | null} */ this.ws = null;
    this.phase = 'idle'; // idle | joining | in_room | reconnecting | leaving | closed
    this.roomUrl = options.url;
    /** @type {string | null} */ this.roomId = null;
    /** @type {string | null} */ this.playerId = null;
    /** @type {Uint8Array | null} */ this.resumeToken = null;
    /** @type {number | null} */ this.entity = null;
    /** @type {number | null} */ this.tickHz = null;
    /** @type {number | null} */ this.serverSchema = null;
    /** @type {boolean | null} HelloAck.compact on the current socket */ this.compactGranted = null;
    this.epoch = 0;
    this.nextSeq = 1;
    /** @type {InputSigner | null} */ this.signer = null;
    /** @type {Promise<void>} */ this.sendChain = Promise.resolve();
    /** @type {number | null} */ this.pendingAck = null;
    /** The session a JoinAccepted just opened, until joined() has taken it over. */
    /** @type {{epoch: number, entity: number} | null} */ this.arriving = null;
    /** @type {[number, number] | null} */ this.view = null;
    /** @type {import('./contract.js').ReceivedSnapshot[]} */ this.inbox = [];
    /** @type {ServerClock | null} */ this.clock = null;
    /** @type {Map<number, number>} */ this.pings = new Map();
    this.nonce = 0;
    /** @type {ReturnType<typeof setInterval> | null} */ this.pingTimer = null;
    /** @type {Error | null} */ this.closedError = null;
    this.stats = { snapshots: 0, snapshotBytes: 0, snapshotsDropped: 0, inputsSent: 0, acks: 0, rateLimited: 0, reconnects: 0, serverErrors: 0 };
    /** @type {((m: msg.ServerMessage) => void) | null} the current request's answer handler */
    this.onAnswer = null;
  }

  // -- the ClientLink (contract.js) ------------------------------------------------------

  /** @param {number} nowMs @returns {import('./contract.js').ClockEstimate} */
  clockEstimate(nowMs) {
    const clock = this.clock;
    if (!clock || !clock.synced) {
      return { serverTick: null, rttMs: clock?.rtt.srttMs ?? null, rttvarMs: clock?.rtt.rttvarMs ?? null, tickHz: this.tickHz };
    }
    return { serverTick: clock.estimatedServerTick(nowMs), rttMs: clock.rtt.srttMs, rttvarMs: clock.rtt.rttvarMs, tickHz: this.tickHz };
  }

  drainSnapshots() {
    const inbox = this.inbox;
    this.inbox = [];
    return inbox;
  }

  /** @param {number} snapshotId */
  ack(snapshotId) {
    if (this.phase !== 'in_room') return;
    this.stats.acks += 1;
    if (this.options.foldAcks) {
      this.pendingAck = snapshotId;
      return;
    }
    this.send(msg.ackMessage(snapshotId));
  }

  /**
   * Number, sign and send one input; returns its seq, or null while not in a room (nothing
   * should be predicted that the server will never apply).
   * @param {Uint8Array} blob
   */
  sendInput(blob) {
    if (this.phase !== 'in_room' || !this.signer) return null;
    const seq = this.nextSeq++;
    const tickMs = Math.floor(performance.timeOrigin + this.now());
    const { signer, ws, epoch } = this;
    const ack = this.pendingAck;
    const view = this.options.sendView ? this.view : null;
    this.pendingAck = null;
    this.stats.inputsSent += 1;
    this.sendChain = this.sendChain.then(async () => {
      const sig = await signer.sign(seq, tickMs, blob, view);
      if (this.ws === ws && this.epoch === epoch && ws && ws.readyState === 1) {
        ws.send(msg.encode(msg.inputFrame(seq, tickMs, blob, sig, ack, view)));
      }
    });
    return seq;
  }

  /**
   * The view the next inputs state (lag compensation, protocol.md): the server tick the
   * player was looking at, as (view_tick, view_frac in 1/65536 tick); null states none.
   * ClientWorld sets it every frame.
   * @param {[number, number] | null} view
   */
  setView(view) {
    this.view = view;
  }

  // -- connecting ------------------------------------------------------------------------

  /**
   * Connect, match and join; resolves with the JoinAccepted message.
   * Rejects with a ServerProtocolError subclass (e.g. UnknownRegion, RoomFull), SchemaMismatch,
   * a ConnectionClosed subclass, or ConnectFailed.
   * @returns {Promise<msg.ServerMessage>}
   */
  async connect() {
    if (this.phase !== 'idle') throw new InvalidState(`cannot connect in phase ${this.phase}`);
    this.phase = 'joining';
    try {
      let url = this.options.url;
      /** @type {Record<string, unknown>} */
      let request = this.options.roomId
        ? msg.joinRoom(this.options.roomId)
        : msg.findOrCreate(/** @type {string} */ (this.options.region), /** @type {string} */ (this.options.gameMode), this.options.partySize);
      for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
        const answer = await this.request(url, request);
        if (answer.t === 'JoinAccepted') return this.joined(answer, url, 'joined');
        // A MatchResult with url: the room lives on another node (WIRE A2).
        url = answer.url;
        request = msg.joinRoom(answer.room_id, answer.seat_token ?? answer.party_token ?? null);
      }
      throw new ConnectFailed(`more than ${MAX_REDIRECTS} redirects`);
    } catch (exc) {
      this.phase = 'closed';
      this.stopPinging();
      this.ws?.close(1000);
      throw this.asSchemaMismatch(exc);
    }
  }

  /** The server's `schema_mismatch` refusal, as the SchemaMismatch a caller checks for. @param {unknown} exc */
  asSchemaMismatch(exc) {
    if (exc instanceof ServerProtocolError && exc.code === 'schema_mismatch') {
      const ours = this.options.schema?.fingerprint ?? 0;
      return new SchemaMismatch(ours, null, `server refused Hello.schema: ${exc.serverMessage}`);
    }
    return exc;
  }

  /** Leave the room (the server closes 1000). */
  leave() {
    if (this.phase === 'closed' || this.phase === 'leaving') return;
    const wasInRoom = this.phase === 'in_room';
    this.phase = 'leaving';
    this.stopPinging();
    if (wasInRoom) this.send(msg.leave());
    else this.ws?.close(1000);
  }

  /**
   * Open a socket to `url`, send Hello and `request`, and resolve with the answer that ends
   * the exchange: JoinAccepted, or a MatchResult carrying a url (redirect).
   * @param {string} url @param {Record<string, unknown>} request @returns {Promise<msg.ServerMessage>}
   */
  request(url, request) {
    return new Promise((resolve, reject) => {
      this.ws?.close(1000);
      let ws;
      try {
        ws = new this.WebSocketImpl(url);
      } catch (exc) {
        reject(new ConnectFailed(`cannot open ${url}: ${/** @type {Error} */ (exc).message}`));
        return;
      }
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      let settled = false;
      const settle = (/** @type {() => void} */ fn) => {
        if (!settled) {
          settled = true;
          this.onAnswer = null;
          fn();
        }
      };
      this.onAnswer = (m) => {
        if (m.t === 'JoinAccepted' || (m.t === 'MatchResult' && m.url)) settle(() => resolve(m));
        else if (m.t === 'ProtocolError') settle(() => reject(protocolErrorFor(m.code, m.message)));
      };
      ws.onopen = () => {
        const helloMessage = msg.hello({
          compact: this.options.compact,
          schema: this.options.schema ? this.options.schema.fingerprint : undefined,
          token: this.options.token,
        });
        ws.send(msg.encode(helloMessage));
        ws.send(msg.encode(request));
        this.startPinging();
      };
      ws.onmessage = (event) => this.receive(ws, new Uint8Array(event.data));
      ws.onerror = () => {}; // the close event that follows carries the outcome
      ws.onclose = (event) => {
        settle(() => reject(event.code === 1006 && !event.reason ? new ConnectFailed(`cannot connect to ${url} (1006)`) : connectionClosedFor(event.code, event.reason)));
        this.closed(ws, event.code, event.reason);
      };
    });
  }

  /** @param {msg.ServerMessage} accepted @param {string} url @param {string} eventType */
  async joined(accepted, url, eventType) {
    const ours = this.options.schema?.fingerprint ?? null;
    this.serverSchema = accepted.schema;
    if (ours !== null && accepted.schema !== null && accepted.schema !== ours) {
      this.phase = 'closed';
      this.ws?.close(1000);
      throw new SchemaMismatch(ours, accepted.schema, 'JoinAccepted.schema');
    }
    this.signer = await InputSigner.create(accepted.session_key);
    this.roomUrl = url;
    this.roomId = accepted.room_id;
    this.playerId = accepted.player_id;
    this.resumeToken = accepted.resume_token;
    this.entity = accepted.entity;
    if (this.tickHz !== accepted.tick_hz || !this.clock) this.clock = new ServerClock(accepted.tick_hz);
    this.tickHz = accepted.tick_hz;
    this.epoch += 1;
    this.arriving = null;
    this.pendingAck = null;
    this.phase = 'in_room';
    this.backoff.reset();
    this.dispatchEvent(new CustomEvent(eventType, { detail: accepted }));
    return accepted;
  }

  // -- receiving -------------------------------------------------------------------------

  /** @param {WebSocket} ws @param {Uint8Array} data */
  receive(ws, data) {
    if (ws !== this.ws) return;
    const nowMs = this.now();
    let m;
    try {
      m = msg.decodeServerMessage(data);
    } catch (exc) {
      // A server that breaks the protocol is not talked to any further (Python: close 1002).
      this.fatal(/** @type {Error} */ (exc));
      ws.close(1002);
      return;
    }
    switch (m.t) {
      case 'Snapshot':
        this.stats.snapshots += 1;
        this.stats.snapshotBytes += m.payload.length;
        this.inbox.push({
          snapshotId: m.id,
          serverTick: m.server_tick,
          baseId: m.base_id,
          compressed: m.compressed,
          payload: m.payload,
          lastInputSeq: m.last_input_seq,
          arrivalMs: nowMs,
          // The session the snapshot belongs to: fixed when its JoinAccepted arrived, not
          // when joined() has finished (it awaits the signer's key, and the server's first
          // snapshot may arrive meanwhile: stamped with the old epoch it was applied to the
          // old replica and acked, the replica was cleared at the next one, and every delta
          // against the acked id then failed to decode).
          epoch: this.arriving ? this.arriving.epoch : this.epoch,
          entity: this.arriving ? this.arriving.entity : this.entity,
        });
        if (this.inbox.length > MAX_INBOX_SNAPSHOTS) {
          this.inbox.shift();
          this.stats.snapshotsDropped += 1;
        }
        return;
      case 'Pong': {
        const sentMs = this.pings.get(m.nonce);
        this.pings.delete(m.nonce);
        if (sentMs !== undefined && this.clock) this.clock.addPong(sentMs, nowMs, m.server_time_ms, m.server_tick);
        return;
      }
      case 'HelloAck':
        this.compactGranted = m.compact;
        return;
      case 'RateLimited':
        this.stats.rateLimited += 1;
        this.dispatchEvent(new CustomEvent('rate-limited', { detail: m.retry_after_ms }));
        return;
      default:
        if (m.t === 'JoinAccepted') this.arriving = { epoch: this.epoch + 1, entity: m.entity };
        if (this.onAnswer) {
          this.onAnswer(m);
        } else if (m.t === 'ProtocolError') {
          this.stats.serverErrors += 1;
          this.dispatchEvent(new CustomEvent('server-error', { detail: protocolErrorFor(m.code, m.message) }));
        }
    }
  }

  /** @param {WebSocket} ws @param {number} code @param {string} reason */
  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.signer = null;
    if (this.phase === 'leaving') {
      this.finish(connectionClosedFor(code, reason));
      return;
    }
    if (this.phase !== 'in_room') return; // a join in progress: its promise got the error
    const error = connectionClosedFor(code, reason);
    if (this.options.reconnect && error.resumable) this.reconnect(error);
    else this.finish(error);
  }

  /** Resume with backoff until the seat is back, denied, or the 30 s hold is over. */
  async reconnect(/** @type {ConnectionClosed} */ cause) {
    this.phase = 'reconnecting';
    this.stopPinging();
    this.dispatchEvent(new CustomEvent('reconnecting', { detail: cause }));
    const started = this.now();
    while (!this.backoff.expired((this.now() - started) / 1000)) {
      await new Promise((r) => setTimeout(r, this.backoff.nextDelay() * 1000));
      if (this.phase !== 'reconnecting') return; // left meanwhile
      try {
        let url = this.roomUrl;
        for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
          const answer = await this.request(url, msg.resume(/** @type {string} */ (this.roomId), /** @type {string} */ (this.playerId), /** @type {Uint8Array} */ (this.resumeToken)));
          if (answer.t === 'JoinAccepted') {
            this.stats.reconnects += 1;
            await this.joined(answer, url, 'resumed');
            return;
          }
          url = answer.url;
        }
      } catch (exc) {
        if (exc instanceof ServerProtocolError || exc instanceof SchemaMismatch) {
          this.finish(exc); // resume_denied, room_lost, ...: retrying cannot help
          return;
        }
      }
    }
    this.finish(new ConnectFailed(`could not resume within ${this.backoff.giveUpAfterS} s`, { cause }));
  }

  /** @param {Error} error */
  fatal(error) {
    this.closedError = error;
    this.phase = 'closed';
    this.stopPinging();
    this.dispatchEvent(new CustomEvent('closed', { detail: error }));
  }

  /** @param {Error} error */
  finish(error) {
    if (this.phase === 'closed') return;
    this.fatal(error);
  }

  // -- helpers ---------------------------------------------------------------------------

  /** @param {Record<string, unknown>} message */
  send(message) {
    const ws = this.ws;
    if (ws && ws.readyState === 1) ws.send(msg.encode(message));
  }

  startPinging() {
    this.stopPinging();
    const sendPing = () => {
      const nonce = ++this.nonce;
      const nowMs = this.now();
      this.pings.set(nonce, nowMs);
      while (this.pings.size > MAX_PINGS_IN_FLIGHT) this.pings.delete(/** @type {number} */ (this.pings.keys().next().value));
      this.send(msg.ping(nonce, Math.max(0, Math.floor(nowMs))));
    };
    sendPing();
    this.pingTimer = setInterval(sendPing, PING_INTERVAL_MS);
  }

  stopPinging() {
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }
}

export { AstranetError, ConnectionClosed };
