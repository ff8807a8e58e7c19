/**
 * CRC-32 (the zlib / IEEE 802.3 polynomial, as Python's `zlib.crc32`), table driven.
 * Used for the schema fingerprint and the snapshot checksum. A dozen lines do not justify
 * a dependency. @module
 */

const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * Continue a CRC over `bytes` (start with `crc = 0`), like `zlib.crc32(bytes, crc)`.
 * @param {Uint8Array} bytes @param {number} [crc] @returns {number} u32
 */
export function crc32(bytes, crc = 0) {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
