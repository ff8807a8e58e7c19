/**
 * The replication schema read from its canonical JSON description (`Schema.describe()` in
 * Python, served at `GET /schema`): components in order, each with fields in order; every
 * field names its encoding, parameters, `code_bits` and `max_codes`.
 *
 * `fingerprint` = CRC32 of the canonical JSON (keys sorted, no spaces; the Python side writes
 * numbers as JavaScript does, see astranet/ecs/canonical.py), so this module recomputes it
 * from the description alone. Dequantization mirrors astranet/ecs/quantize.py operation for
 * operation in float64, then rounds to float32 (`Math.fround`), so values are bit-identical.
 * @module
 */

import { crc32 } from './crc32.js';
import { AstranetError } from './errors.js';

export class SchemaError extends AstranetError {}

const TAU = 2.0 * Math.PI;
const QUAT_LIMIT = 1.0 / Math.sqrt(2.0);
const QUAT_KEEP = [
  [1, 2, 3],
  [0, 2, 3],
  [0, 1, 3],
  [0, 1, 2],
];

/**
 * JSON with object keys sorted recursively and no spaces: the bytes the fingerprint covers.
 * @param {unknown} value @returns {string}
 */
export function canonicalJson(value) {
  return JSON.stringify(value, (_key, v) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      /** @type {Record<string, unknown>} */
      const sorted = {};
      for (const k of Object.keys(v).sort()) sorted[k] = v[k];
      return sorted;
    }
    return v;
  });
}

/**
 * @typedef {object} FieldSpec
 * @property {string} name        "Component.field"
 * @property {string} encoding    Float | Quantized | Angle | Quaternion | Bool
 * @property {number} size        floats per entity in the state row
 * @property {number} k           code components per entity
 * @property {number[]} codeBits  bit width of each code component
 * @property {number[]} maxCodes  largest valid code of each component
 * @property {Record<string, number>} params  lo/hi/step/bits as declared
 * @property {number} offset      first column of this field in a flat state row
 */

export class Schema {
  /**
   * @param {{format?: number, components: {name: string, fields: Record<string, any>[]}[]}} description
   *   the JSON of `Schema.describe()` (GET /schema)
   */
  constructor(description) {
    if (!description || !Array.isArray(description.components)) {
      throw new SchemaError('schema description needs a components array');
    }
    /** @type {FieldSpec[]} */
    this.fields = [];
    let offset = 0;
    for (const component of description.components) {
      for (const f of component.fields) {
        const codeBits = f.code_bits.map(Number);
        const maxCodes = f.max_codes.map(Number);
        if (codeBits.length !== maxCodes.length || codeBits.some((/** @type {number} */ b) => !(b >= 1 && b <= 32))) {
          throw new SchemaError(`field ${component.name}.${f.name}: bad code_bits`);
        }
        const size = f.encoding === 'Quaternion' ? 4 : Number(f.size ?? 1);
        this.fields.push({
          name: `${component.name}.${f.name}`,
          encoding: f.encoding,
          size,
          k: codeBits.length,
          codeBits,
          maxCodes,
          params: { lo: f.lo, hi: f.hi, step: f.step, bits: f.bits },
          offset,
        });
        offset += size;
      }
    }
    if (this.fields.length === 0) throw new SchemaError('a schema needs at least one field');
    /** Columns of a flat state row (Python's StateLayout.width). */
    this.width = offset;
    this.description = description;
    this.canonical = canonicalJson(description);
    /** CRC32 of the canonical JSON: the u32 in every payload header, Hello and JoinAccepted. */
    this.fingerprint = crc32(new TextEncoder().encode(this.canonical));
    /** @type {Map<string, FieldSpec>} */
    this.byName = new Map(this.fields.map((f) => [f.name, f]));
  }

  /** @param {string} name @returns {FieldSpec} */
  field(name) {
    const spec = this.byName.get(name);
    if (!spec) throw new SchemaError(`no replicated field ${name}`);
    return spec;
  }

  /**
   * Dequantize every row of decoded codes into flat float64 state rows (n x width), the
   * layout of Python's `read_rows`: each field's floats side by side in schema order.
   * @param {{netIds: Uint32Array, codes: Uint32Array[]}} snapshot
   * @returns {Float64Array}
   */
  dequantize(snapshot) {
    const n = snapshot.netIds.length;
    const width = this.width;
    const out = new Float64Array(n * width);
    this.fields.forEach((spec, f) => dequantizeField(spec, snapshot.codes[f], n, out, width));
    return out;
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * @param {FieldSpec} spec @param {Uint32Array} codes @param {number} n
 * @param {Float64Array} out @param {number} width
 */
function dequantizeField(spec, codes, n, out, width) {
  const { k, offset } = spec;
  switch (spec.encoding) {
    case 'Quantized': {
      const { lo, step } = spec.params;
      for (let i = 0; i < n; i++) {
        for (let c = 0; c < k; c++) out[i * width + offset + c] = Math.fround(lo + codes[i * k + c] * step);
      }
      return;
    }
    case 'Angle': {
      const full = 2 ** spec.params.bits;
      const half = full / 2;
      const unit = TAU / full;
      for (let i = 0; i < n; i++) {
        for (let c = 0; c < k; c++) {
          const code = codes[i * k + c];
          out[i * width + offset + c] = Math.fround((code >= half ? code - full : code) * unit);
        }
      }
      return;
    }
    case 'Float':
      for (let i = 0; i < n; i++) {
        for (let c = 0; c < k; c++) {
          u32[0] = codes[i * k + c];
          out[i * width + offset + c] = f32[0];
        }
      }
      return;
    case 'Bool':
      for (let i = 0; i < n; i++) {
        for (let c = 0; c < k; c++) out[i * width + offset + c] = codes[i * k + c] !== 0 ? 1 : 0;
      }
      return;
    case 'Quaternion': {
      const maxCode = 2 ** spec.params.bits - 2;
      const step = (2.0 * QUAT_LIMIT) / maxCode;
      for (let i = 0; i < n; i++) {
        const largest = codes[i * 4] & 3;
        const a = -QUAT_LIMIT + codes[i * 4 + 1] * step;
        const b = -QUAT_LIMIT + codes[i * 4 + 2] * step;
        const c = -QUAT_LIMIT + codes[i * 4 + 3] * step;
        const dropped = Math.sqrt(Math.max(0.0, 1.0 - (a * a + b * b + c * c)));
        const base = i * width + offset;
        const keep = QUAT_KEEP[largest];
        out[base + keep[0]] = Math.fround(a);
        out[base + keep[1]] = Math.fround(b);
        out[base + keep[2]] = Math.fround(c);
        out[base + largest] = Math.fround(dropped);
      }
      return;
    }
    default:
      throw new SchemaError(`unknown encoding ${spec.encoding} of ${spec.name}`);
  }
}
