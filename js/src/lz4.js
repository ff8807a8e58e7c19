/**
 * LZ4 frame decoder (https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md), bounded.
 *
 * Why not a package: the npm LZ4 decoders are CommonJS only (lz4js), native (lz4-napi) or
 * WASM that needs a bundler (lz4-wasm); none loads as a plain browser ES module, and none caps
 * the decompressed size, which a client must (an LZ4 bomb). The decoder is ~100 lines and is
 * tested against frames made by Python's `lz4.frame` (js/test/codec.test.js).
 *
 * Accepted: frame version 01, linked or independent blocks, optional content size (checked),
 * optional block / content checksums (skipped, not verified: the snapshot header's CRC is
 * the integrity check astranet uses), no dictionary. The frame must end exactly at the end
 * of the input. Header checksum byte is not verified either (same reason).
 * @module
 */

import { SnapshotDecodeError } from './errors.js';

const MAGIC = 0x184d2204;

/**
 * Decompress one LZ4 frame.
 * @param {Uint8Array} src @param {number} maxBytes cap on the decompressed size
 * @returns {Uint8Array}
 */
export function decompressFrame(src, maxBytes) {
  const fail = (/** @type {string} */ why) => {
    throw new SnapshotDecodeError(`bad LZ4 frame: ${why}`);
  };
  if (src.length < 7) fail('truncated header');
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  if (view.getUint32(0, true) !== MAGIC) fail('bad magic');
  const flg = src[4];
  const bd = src[5];
  if (flg >> 6 !== 1 || flg & 0x02 || flg & 0x01) fail('unsupported frame flags');
  if (bd & 0x8f) fail('reserved BD bits set');
  const blockChecksums = (flg & 0x10) !== 0;
  const hasContentSize = (flg & 0x08) !== 0;
  const contentChecksum = (flg & 0x04) !== 0;
  const blockMax = 1 << (8 + 2 * ((bd >> 4) & 7));
  if (((bd >> 4) & 7) < 4) fail('bad block max size');
  let pos = 6;
  let contentSize = -1;
  if (hasContentSize) {
    if (src.length < pos + 9) fail('truncated header');
    const low = view.getUint32(pos, true);
    const high = view.getUint32(pos + 4, true);
    contentSize = high * 2 ** 32 + low;
    if (contentSize > maxBytes) fail('content size above the cap');
    pos += 8;
  }
  pos += 1; // header checksum
  let out = new Uint8Array(Math.min(maxBytes, contentSize >= 0 ? contentSize : 4 * src.length + 64));
  let length = 0;
  const reserve = (/** @type {number} */ extra) => {
    const need = length + extra;
    if (need > maxBytes) fail('decompressed size above the cap');
    if (need > out.length) {
      const grown = new Uint8Array(Math.min(maxBytes, Math.max(need, out.length * 2)));
      grown.set(out.subarray(0, length));
      out = grown;
    }
  };
  for (;;) {
    if (pos + 4 > src.length) fail('truncated block size');
    const word = view.getUint32(pos, true);
    pos += 4;
    if (word === 0) break; // end mark
    const size = word & 0x7fffffff;
    if (size > blockMax || pos + size > src.length) fail('block larger than allowed or truncated');
    if (word & 0x80000000) {
      reserve(size);
      out.set(src.subarray(pos, pos + size), length);
      length += size;
    } else {
      length = decodeBlock(src, pos, pos + size, reserve, () => out, length, fail);
    }
    pos += size + (blockChecksums ? 4 : 0);
  }
  if (contentChecksum) pos += 4;
  if (pos !== src.length) fail(pos > src.length ? 'truncated' : 'trailing bytes after the frame');
  if (contentSize >= 0 && contentSize !== length) fail('content size disagrees');
  return out.subarray(0, length);
}

/**
 * One compressed block (sequences of literals + match) appended at `length`.
 * @param {Uint8Array} src @param {number} pos @param {number} end
 * @param {(n: number) => void} reserve @param {() => Uint8Array} output
 * @param {number} length @param {(why: string) => never} fail
 * @returns {number} the new output length
 */
function decodeBlock(src, pos, end, reserve, output, length, fail) {
  while (pos < end) {
    const token = src[pos++];
    let literals = token >> 4;
    if (literals === 15) {
      let byte;
      do {
        if (pos >= end) fail('truncated literal length');
        byte = src[pos++];
        literals += byte;
      } while (byte === 255);
    }
    if (pos + literals > end) fail('literals run past the block');
    reserve(literals);
    let out = output();
    out.set(src.subarray(pos, pos + literals), length);
    length += literals;
    pos += literals;
    if (pos === end) break; // the last sequence has no match
    if (pos + 2 > end) fail('truncated match offset');
    const offset = src[pos] | (src[pos + 1] << 8);
    pos += 2;
    if (offset === 0 || offset > length) fail('match offset out of range');
    let matchLength = (token & 15) + 4;
    if ((token & 15) === 15) {
      let byte;
      do {
        if (pos >= end) fail('truncated match length');
        byte = src[pos++];
        matchLength += byte;
      } while (byte === 255);
    }
    reserve(matchLength);
    out = output();
    let from = length - offset;
    if (offset >= matchLength) {
      out.copyWithin(length, from, from + matchLength);
      length += matchLength;
    } else {
      for (let i = 0; i < matchLength; i++) out[length++] = out[from++]; // overlapping copy
    }
  }
  return length;
}
