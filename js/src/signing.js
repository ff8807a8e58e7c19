/**
 * InputFrame signatures (docs/protocol.md "Signing") through WebCrypto:
 * `sig = HMAC-SHA256(session_key, seq u32 LE ‖ tick_ms u64 LE ‖ input_blob)[0:16]`.
 * WebCrypto is asynchronous, so `sign` returns a promise; the client chains sends so frames
 * leave in seq order. @module
 */

export const SIG_BYTES = 16;

/** The 12 header bytes + blob that the HMAC covers. */
export function signedBytes(/** @type {number} */ seq, /** @type {number} */ tickMs, /** @type {Uint8Array} */ blob) {
  const bytes = new Uint8Array(12 + blob.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, seq, true);
  view.setUint32(4, tickMs % 2 ** 32, true);
  view.setUint32(8, Math.floor(tickMs / 2 ** 32), true);
  bytes.set(blob, 12);
  return bytes;
}

export class InputSigner {
  /** @param {CryptoKey} key */
  constructor(key) {
    this.key = key;
  }

  /** @param {Uint8Array} sessionKey 32 bytes from JoinAccepted */
  static async create(sessionKey) {
    const key = await crypto.subtle.importKey('raw', sessionKey, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return new InputSigner(key);
  }

  /** @param {number} seq @param {number} tickMs @param {Uint8Array} blob @returns {Promise<Uint8Array>} */
  async sign(seq, tickMs, blob) {
    const mac = await crypto.subtle.sign('HMAC', this.key, signedBytes(seq, tickMs, blob));
    return new Uint8Array(mac, 0, SIG_BYTES).slice();
  }
}
