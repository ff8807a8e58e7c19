/**
 * InputFrame signatures (docs/protocol.md "Signing") through WebCrypto:
 * `sig = HMAC-SHA256(session_key, seq u32 LE ‖ tick_ms u64 LE ‖ input_blob)[0:16]`.
 * WebCrypto is asynchronous, so `sign` returns a promise; the client chains sends so frames
 * leave in seq order. @module
 */

export const SIG_BYTES = 16;
/** Label of the key that signs frames carrying a lag-compensation view (protocol.md). */
export const VIEW_KEY_LABEL = new TextEncoder().encode('astranet input view v1');

/**
 * What the HMAC covers: seq u32 LE, tick_ms u64 LE, then (frames with a view) view_tick u64 LE
 * and view_frac u16 LE, then the blob.
 * @param {number} seq @param {number} tickMs @param {Uint8Array} blob
 * @param {[number, number] | null} [view] (view_tick, view_frac)
 */
export function signedBytes(seq, tickMs, blob, view = null) {
  const header = view ? 22 : 12;
  const bytes = new Uint8Array(header + blob.length);
  const data = new DataView(bytes.buffer);
  data.setUint32(0, seq, true);
  data.setUint32(4, tickMs % 2 ** 32, true);
  data.setUint32(8, Math.floor(tickMs / 2 ** 32), true);
  if (view) {
    data.setUint32(12, view[0] % 2 ** 32, true);
    data.setUint32(16, Math.floor(view[0] / 2 ** 32), true);
    data.setUint16(20, view[1], true);
  }
  bytes.set(blob, header);
  return bytes;
}

const importHmacKey = (/** @type {Uint8Array} */ raw) =>
  crypto.subtle.importKey('raw', Uint8Array.from(raw), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);

export class InputSigner {
  /** @param {CryptoKey} key @param {CryptoKey} viewKey */
  constructor(key, viewKey) {
    this.key = key;
    this.viewKey = viewKey;
  }

  /** @param {Uint8Array} sessionKey 32 bytes from JoinAccepted */
  static async create(sessionKey) {
    const key = await importHmacKey(sessionKey);
    // view_key = HMAC-SHA256(session_key, "astranet input view v1")
    const viewKey = await importHmacKey(new Uint8Array(await crypto.subtle.sign('HMAC', key, VIEW_KEY_LABEL)));
    return new InputSigner(key, viewKey);
  }

  /**
   * @param {number} seq @param {number} tickMs @param {Uint8Array} blob
   * @param {[number, number] | null} [view] lag compensation (view_tick, view_frac)
   * @returns {Promise<Uint8Array>}
   */
  async sign(seq, tickMs, blob, view = null) {
    const mac = await crypto.subtle.sign('HMAC', view ? this.viewKey : this.key, signedBytes(seq, tickMs, blob, view));
    return new Uint8Array(mac, 0, SIG_BYTES).slice();
  }
}
