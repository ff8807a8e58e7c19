/**
 * Snapshot payload codec, decode side (docs/protocol.md "Snapshot payload", format v2):
 * a mirror of astranet/replication/codec.py `decode_payload` / `decode_delta` and
 * astranet/replication/_bits.py `unpack_bits`.
 *
 * A decoded snapshot is `{id, tick, netIds: Uint32Array (ascending), codes: Uint32Array[]}`
 * with one code array per schema field, row-major `n x k`. Codes are exact; floats come from
 * `Schema.dequantize`. Every count is checked against the bytes that remain before anything is
 * allocated; every malformed input throws SnapshotDecodeError (DesyncError on a checksum
 * mismatch), and the base is never modified.
 * Benchmark: benchmarks/js_decode.mjs (600-drone delta).
 * @module
 */

import { crc32 } from './crc32.js';
import { DesyncError, SnapshotDecodeError } from './errors.js';
import { decompressFrame } from './lz4.js';

export const FORMAT_VERSION = 2;
export const FLAG_DELTA = 0x01;
export const FLAG_CHECKSUM = 0x02;
/** Delta only: spawn and despawn counts are written (else both are 0). */
export const FLAG_STRUCTURE = 0x04;
/** The changed rows are a packed gap list, not a bitmask. */
export const FLAG_ROW_LIST = 0x08;
/** No field masks: every changed row changed in every field. */
export const FLAG_ALL_FIELDS = 0x10;
/** A varint names a prediction snapshot (base id - lag); width bytes may say "predicted". */
export const FLAG_PREDICTED = 0x20;
/** In a width byte: this component's deltas are against the prediction. */
export const WIDTH_PREDICTED = 0x40;
/** Largest tick span a prediction extrapolates over (keeps products below 2**53). */
export const MAX_PREDICTION_TICKS = 1 << 16;
const KNOWN_FLAGS = FLAG_DELTA | FLAG_CHECKSUM | FLAG_STRUCTURE | FLAG_ROW_LIST | FLAG_ALL_FIELDS | FLAG_PREDICTED;
const DELTA_ONLY = FLAG_STRUCTURE | FLAG_ROW_LIST | FLAG_ALL_FIELDS | FLAG_PREDICTED;

/** floor(x / d) for integers |x| < 2**53, d > 0, corrected for any rounding of the division. */
function floorDiv(/** @type {number} */ x, /** @type {number} */ d) {
  let q = Math.floor(x / d);
  if (q * d > x) q -= 1;
  else if ((q + 1) * d <= x) q += 1;
  return q;
}
/** Cap on a decompressed payload, as MAX_DECODED_BYTES in Python (16 MiB). */
export const MAX_DECODED_BYTES = 16 << 20;
/** Row limit, as astranet.ecs.store.MAX_ENTITIES (2**20). */
export const MAX_ENTITIES = 1 << 20;

/**
 * @typedef {object} DecodedSnapshot
 * @property {number} id
 * @property {number} tick
 * @property {Uint32Array} netIds  ascending
 * @property {Uint32Array[]} codes  per field, n x k row-major
 */

/** @param {import('./schema.js').Schema} schema @returns {DecodedSnapshot} */
export function emptySnapshot(schema) {
  return { id: 0, tick: 0, netIds: new Uint32Array(0), codes: schema.fields.map(() => new Uint32Array(0)) };
}

/** Bytes of `count` values at `width` bits. */
export function packedSize(/** @type {number} */ count, /** @type {number} */ width) {
  return Math.ceil((count * width) / 8);
}

/**
 * Unpack `count` values of `width` bits (LSB first) from `buf` at byte `start`.
 * @param {Uint8Array} buf @param {number} start @param {number} count @param {number} width
 * @param {Uint32Array} [out] @returns {Uint32Array}
 */
export function unpackBits(buf, start, count, width, out = new Uint32Array(count)) {
  if (width === 0 || count === 0) {
    out.fill(0, 0, count);
    return out;
  }
  let pos = start;
  if (width <= 24) {
    // acc holds < width + 8 <= 32 bits: plain 32-bit integer operations suffice.
    const mask = width === 32 ? 0xffffffff : (1 << width) - 1;
    let acc = 0;
    let bits = 0;
    for (let i = 0; i < count; i++) {
      while (bits < width) {
        acc = (acc | (buf[pos++] << bits)) >>> 0;
        bits += 8;
      }
      out[i] = acc & mask;
      acc >>>= width;
      bits -= width;
    }
    return out;
  }
  // 25..32 bits: read each value from its 5 covering bytes with float math (exact < 2**53).
  for (let i = 0; i < count; i++) {
    const bit = i * width;
    let byte = start + (bit >>> 3);
    const shift = bit & 7;
    let value = 0;
    let scale = 1;
    const last = start + ((bit + width + 7) >>> 3);
    for (; byte < last; byte++, scale *= 256) value += buf[byte] * scale;
    out[i] = Math.floor(value / 2 ** shift) % 2 ** width;
  }
  return out;
}

class Reader {
  /** @param {Uint8Array} buf */
  constructor(buf) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = 0;
  }

  /** Reserve `n` bytes; returns their start. */
  take(/** @type {number} */ n) {
    if (n < 0 || this.pos + n > this.buf.length) {
      throw new SnapshotDecodeError(`payload truncated: need ${n} bytes at ${this.pos}`);
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8() {
    return this.buf[this.take(1)];
  }

  /** Unsigned LEB128 (at most 5 bytes, minimal form, <= `limit`). */
  uleb(limit = 0xffffffff) {
    let value = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      if (i === 5) throw new SnapshotDecodeError('varint longer than 5 bytes');
      if (this.pos >= this.buf.length) throw new SnapshotDecodeError(`payload truncated: varint at ${this.pos}`);
      const byte = this.buf[this.pos++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if ((byte === 0 && i > 0) || value > limit) throw new SnapshotDecodeError(`varint ${value} overlong or above ${limit}`);
        return value;
      }
      scale *= 128;
    }
  }

  u32() {
    const at = this.take(4);
    return this.view.getUint32(at, true);
  }

  /** `n` strictly increasing non-zero u32 ids. */
  ids(/** @type {number} */ n) {
    const at = this.take(4 * n);
    const ids = new Uint32Array(n);
    let previous = 0;
    for (let i = 0; i < n; i++) {
      const id = this.view.getUint32(at + 4 * i, true);
      if (id <= previous) throw new SnapshotDecodeError('net ids must be non-zero and strictly increasing');
      ids[i] = id;
      previous = id;
    }
    return ids;
  }

  /** A bitmask of `n` bits as a Uint8Array of 0/1. */
  mask(/** @type {number} */ n) {
    const at = this.take(Math.ceil(n / 8));
    const bits = new Uint8Array(n);
    for (let i = 0; i < n; i++) bits[i] = (this.buf[at + (i >>> 3)] >>> (i & 7)) & 1;
    return bits;
  }
}

/**
 * Undo the server's LZ4 framing when `compressed`.
 * @param {Uint8Array} payload @param {boolean} compressed @returns {Uint8Array}
 */
export function decompressPayload(payload, compressed) {
  if (!compressed) {
    if (payload.length > MAX_DECODED_BYTES) throw new SnapshotDecodeError('payload exceeds MAX_DECODED_BYTES');
    return payload;
  }
  return decompressFrame(payload, MAX_DECODED_BYTES);
}

/**
 * CRC32 of a decoded state (docs/protocol.md "Checksum"): ids, then each field's codes, u32 LE.
 * @param {DecodedSnapshot} snapshot @returns {number}
 */
export function stateChecksum(snapshot) {
  let crc = crc32(new Uint8Array(snapshot.netIds.buffer, snapshot.netIds.byteOffset, snapshot.netIds.byteLength));
  for (const codes of snapshot.codes) {
    crc = crc32(new Uint8Array(codes.buffer, codes.byteOffset, codes.byteLength), crc);
  }
  return crc;
}

/**
 * @param {import('./schema.js').FieldSpec} spec @param {Uint32Array} codes
 * @param {number} from first row to check @param {number} to end row
 */
function checkCodes(spec, codes, from, to) {
  const { k, maxCodes } = spec;
  for (let i = from * k; i < to * k; i++) {
    if (codes[i] > maxCodes[i % k]) throw new SnapshotDecodeError(`field ${spec.name} has out-of-range codes`);
  }
}

/**
 * The changed rows (indices into the surviving base rows), ascending: a bitmask of `nCommon`
 * bits, or (FLAG_ROW_LIST) a width byte and `nUpdate` packed gaps (row - previous row - 1).
 * @param {Reader} reader @param {Uint8Array} raw @param {number} flags
 * @param {number} nCommon @param {number} nUpdate @returns {Int32Array}
 */
function readChangedRows(reader, raw, flags, nCommon, nUpdate) {
  const updated = new Int32Array(nUpdate);
  if (flags & FLAG_ROW_LIST) {
    const width = reader.u8();
    if (width > 32) throw new SnapshotDecodeError(`row-list width ${width} exceeds 32 bits`);
    const gaps = unpackBits(raw, reader.take(packedSize(nUpdate, width)), nUpdate, width);
    let row = -1;
    for (let u = 0; u < nUpdate; u++) {
      row += gaps[u] + 1;
      if (row >= nCommon) throw new SnapshotDecodeError('changed row beyond the surviving base rows');
      updated[u] = row;
    }
    return updated;
  }
  const changed = reader.mask(nCommon);
  let count = 0;
  for (let i = 0; i < nCommon; i++) {
    if (changed[i]) {
      if (count === nUpdate) throw new SnapshotDecodeError('changed-row mask disagrees with the update count');
      updated[count++] = i;
    }
  }
  if (count !== nUpdate) throw new SnapshotDecodeError('changed-row mask disagrees with the update count');
  return updated;
}

/**
 * Rebuild the state an uncompressed payload describes, applied to `base`.
 * @param {import('./schema.js').Schema} schema @param {Uint8Array} raw
 * @param {DecodedSnapshot | null} base @param {{snapshotId?: number, tick?: number, kept?: (id: number) => (DecodedSnapshot | undefined)}} [at]
 * @returns {DecodedSnapshot}
 */
export function decodeDelta(schema, raw, base, { snapshotId = 0, tick = 0, kept = undefined } = {}) {
  const reader = new Reader(raw);
  /** @type {DecodedSnapshot | null} the prediction snapshot, when FLAG_PREDICTED */
  let prev = null;
  const version = reader.u8();
  const flags = reader.u8();
  if (version !== FORMAT_VERSION || flags & ~KNOWN_FLAGS) {
    throw new SnapshotDecodeError(`unsupported payload version ${version} / flags ${flags}`);
  }
  let nSpawn = 0;
  let nDespawn = 0;
  let nUpdate = 0;
  if (flags & FLAG_DELTA) {
    if (flags & FLAG_STRUCTURE) {
      nSpawn = reader.uleb(MAX_ENTITIES);
      nDespawn = reader.uleb(MAX_ENTITIES);
    }
    nUpdate = reader.uleb(MAX_ENTITIES);
    if (!nUpdate && flags & (FLAG_ROW_LIST | FLAG_ALL_FIELDS | FLAG_PREDICTED)) {
      throw new SnapshotDecodeError('row-set flags on a payload without updates');
    }
    const lag = flags & FLAG_PREDICTED ? reader.uleb() : 0;
    if (flags & FLAG_PREDICTED && lag === 0) throw new SnapshotDecodeError('prediction snapshot lag must be >= 1');
    if (!base) throw new SnapshotDecodeError('delta payload but its base snapshot is unknown');
    if (lag) {
      prev = kept && base.id > lag ? kept(base.id - lag) ?? null : null;
      if (!prev) throw new SnapshotDecodeError(`prediction snapshot ${base.id - lag} is unknown`);
      const ahead = tick - base.tick;
      const span = base.tick - prev.tick;
      if (!(prev.id < base.id && span > 0 && ahead >= 0 && span <= MAX_PREDICTION_TICKS && ahead <= MAX_PREDICTION_TICKS)) {
        throw new SnapshotDecodeError('prediction snapshot ticks out of range');
      }
    }
  } else {
    if (flags & DELTA_ONLY) throw new SnapshotDecodeError(`delta-only flags ${flags} on a full payload`);
    const nFields = reader.uleb();
    const fingerprint = reader.u32();
    if (nFields !== schema.fields.length || fingerprint !== schema.fingerprint) {
      throw new SnapshotDecodeError('payload was encoded for another replication schema');
    }
    nSpawn = reader.uleb(MAX_ENTITIES);
    base = emptySnapshot(schema);
  }
  const expectedCrc = flags & FLAG_CHECKSUM ? reader.u32() : null;
  const despawnIds = reader.ids(nDespawn);
  const spawnIds = reader.ids(nSpawn);
  const baseIds = /** @type {DecodedSnapshot} */ (base).netIds;
  const baseCodes = /** @type {DecodedSnapshot} */ (base).codes;

  // Surviving base rows (merge walk: both id lists ascending).
  const nBase = baseIds.length;
  let keep = null;
  if (nDespawn) {
    keep = new Uint8Array(nBase).fill(1);
    let j = 0;
    for (let i = 0; i < nDespawn; i++) {
      const id = despawnIds[i];
      while (j < nBase && baseIds[j] < id) j++;
      if (j === nBase || baseIds[j] !== id) throw new SnapshotDecodeError('despawn of a net id that is not in the base');
      keep[j++] = 0;
    }
  }
  const nCommon = nBase - nDespawn;
  const nTotal = nCommon + nSpawn;
  if (nTotal > MAX_ENTITIES || nUpdate > nCommon) throw new SnapshotDecodeError('row counts do not add up');

  const commonIds = keep ? new Uint32Array(nCommon) : baseIds.slice();
  /** @type {Int32Array | null} surviving base row of each common row */
  let fromBase = null;
  if (keep) {
    fromBase = new Int32Array(nCommon);
    for (let i = 0, c = 0; i < nBase; i++) {
      if (keep[i]) {
        commonIds[c] = baseIds[i];
        fromBase[c++] = i;
      }
    }
  }
  if (nSpawn && nCommon) {
    let j = 0;
    for (let i = 0; i < nSpawn; i++) {
      while (j < nCommon && commonIds[j] < spawnIds[i]) j++;
      if (j < nCommon && commonIds[j] === spawnIds[i]) throw new SnapshotDecodeError('spawn of a net id that is already present');
    }
  }

  // Spawn codes, absolute, one packed run per field and code component.
  const spawnCodes = schema.fields.map((spec) => {
    const codes = new Uint32Array(nSpawn * spec.k);
    const run = new Uint32Array(nSpawn);
    spec.codeBits.forEach((bits, c) => {
      const at = reader.take(packedSize(nSpawn, bits));
      unpackBits(raw, at, nSpawn, bits, run);
      for (let i = 0; i < nSpawn; i++) codes[i * spec.k + c] = run[i];
    });
    checkCodes(spec, codes, 0, nSpawn);
    return codes;
  });

  // Common rows' codes: copies, the base stays intact.
  const commonCodes = schema.fields.map((spec, f) => {
    const k = spec.k;
    if (!fromBase) return baseCodes[f].slice();
    const src = baseCodes[f];
    const codes = new Uint32Array(nCommon * k);
    for (let c = 0; c < nCommon; c++) {
      const b = fromBase[c] * k;
      for (let q = 0; q < k; q++) codes[c * k + q] = src[b + q];
    }
    return codes;
  });

  if (nUpdate) {
    const updated = readChangedRows(reader, raw, flags, nCommon, nUpdate);
    const allFields = new Uint8Array(nUpdate).fill(1);
    const fieldMasks = schema.fields.map(() => (flags & FLAG_ALL_FIELDS ? allFields : reader.mask(nUpdate)));
    const rows = new Int32Array(nUpdate);
    const which = new Int32Array(nUpdate); // r -> its index among the updated rows
    const zz = new Uint32Array(nUpdate);
    // Row of each updated row in the prediction snapshot (-1: not there), by a merge walk.
    const prevRow = new Int32Array(nUpdate).fill(-1);
    if (prev) {
      const prevIds = prev.netIds;
      for (let u = 0, j = 0; u < nUpdate; u++) {
        const id = commonIds[updated[u]];
        while (j < prevIds.length && prevIds[j] < id) j++;
        if (j < prevIds.length && prevIds[j] === id) prevRow[u] = j;
      }
    }
    schema.fields.forEach((spec, f) => {
      const mask = fieldMasks[f];
      let m = 0;
      for (let u = 0; u < nUpdate; u++) {
        if (mask[u]) {
          which[m] = u;
          rows[m++] = updated[u];
        }
      }
      if (m === 0) return;
      const target = commonCodes[f];
      const k = spec.k;
      spec.codeBits.forEach((bits, c) => {
        const byte = raw[reader.take(1)];
        const width = byte & 0x3f;
        if (width > bits || byte & 0x80) throw new SnapshotDecodeError(`delta width byte ${byte} (${bits}-bit codes)`);
        const at = reader.take(packedSize(m, width));
        unpackBits(raw, at, m, width, zz);
        if (byte & WIDTH_PREDICTED) {
          if (!prev) throw new SnapshotDecodeError('predicted deltas without a prediction snapshot');
          // p = b + floor((b - a) * ahead / span), then (p + delta) mod 2**bits: exact doubles.
          const ahead = tick - /** @type {DecodedSnapshot} */ (base).tick;
          const span = /** @type {DecodedSnapshot} */ (base).tick - prev.tick;
          const prevCodes = prev.codes[f];
          const full = 2 ** bits;
          for (let r = 0; r < m; r++) {
            const z = zz[r];
            const signed = z % 2 === 1 ? -(Math.floor(z / 2) + 1) : z / 2;
            const i = rows[r] * k + c;
            const b = target[i];
            const pr = prevRow[which[r]];
            const guess = pr < 0 ? b : b + floorDiv((b - prevCodes[pr * k + c]) * ahead, span);
            target[i] = (((guess + signed) % full) + full) % full;
          }
        } else if (bits <= 30) {
          const wrap = (1 << bits) - 1;
          for (let r = 0; r < m; r++) {
            const z = zz[r];
            const signed = (z >>> 1) ^ -(z & 1);
            const i = rows[r] * k + c;
            target[i] = (target[i] + signed) & wrap;
          }
        } else {
          const full = 2 ** bits;
          for (let r = 0; r < m; r++) {
            const z = zz[r];
            const signed = z % 2 === 1 ? -(Math.floor(z / 2) + 1) : z / 2;
            const i = rows[r] * k + c;
            target[i] = (((target[i] + signed) % full) + full) % full;
          }
        }
      });
      for (let r = 0; r < m; r++) {
        const i = rows[r] * k;
        for (let c = 0; c < k; c++) {
          if (target[i + c] > spec.maxCodes[c]) throw new SnapshotDecodeError(`field ${spec.name} has out-of-range codes`);
        }
      }
    });
  }
  if (reader.pos !== raw.length) throw new SnapshotDecodeError(`${raw.length - reader.pos} trailing bytes in payload`);

  /** @type {Uint32Array} */
  let netIds;
  /** @type {Uint32Array[]} */
  let codes;
  if (nSpawn === 0) {
    netIds = commonIds;
    codes = commonCodes;
  } else {
    netIds = new Uint32Array(nTotal);
    netIds.set(commonIds);
    netIds.set(spawnIds, nCommon);
    codes = schema.fields.map((spec, f) => {
      const all = new Uint32Array(nTotal * spec.k);
      all.set(commonCodes[f]);
      all.set(spawnCodes[f], nCommon * spec.k);
      return all;
    });
    if (nCommon && spawnIds[0] < commonIds[nCommon - 1]) {
      // Spawns interleave (recycled ids): sort rows by id.
      const order = Array.from(netIds.keys()).sort((a, b) => netIds[a] - netIds[b]);
      const sortedIds = Uint32Array.from(order, (i) => netIds[i]);
      codes = codes.map((all, f) => {
        const k = schema.fields[f].k;
        const sorted = new Uint32Array(all.length);
        order.forEach((from, to) => sorted.set(all.subarray(from * k, from * k + k), to * k));
        return sorted;
      });
      netIds = sortedIds;
    }
  }
  const result = { id: snapshotId, tick, netIds, codes };
  if (expectedCrc !== null && stateChecksum(result) !== expectedCrc) {
    throw new DesyncError(`state checksum mismatch at snapshot ${snapshotId}`);
  }
  return result;
}

/**
 * Decode a Snapshot message's payload against `base` (the snapshot named by its base_id).
 * @param {import('./schema.js').Schema} schema @param {Uint8Array} payload
 * @param {boolean} compressed @param {DecodedSnapshot | null} base
 * @param {{snapshotId?: number, tick?: number, kept?: (id: number) => (DecodedSnapshot | undefined)}} [at] @returns {DecodedSnapshot}
 */
export function decodePayload(schema, payload, compressed, base, at = {}) {
  // `at.kept`: the client's other kept snapshots by id (a predicted payload names one).
  return decodeDelta(schema, decompressPayload(payload, compressed), base, at);
}
