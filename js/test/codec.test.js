import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Replica, Schema, SnapshotDecodeError, crc32, decodePayload, unpackBits } from '../src/index.js';
import { hex, vectors } from './vectors.js';

test('crc32 matches zlib.crc32', () => {
  for (const v of vectors.crc32) assert.equal(crc32(hex(v.hex)), v.crc);
});

for (const [name, s] of Object.entries(vectors.schemas)) {
  test(`schema ${name}: canonical JSON and fingerprint match Python`, () => {
    const schema = new Schema(s.description);
    assert.equal(schema.canonical, s.canonical);
    assert.equal(schema.fingerprint, s.fingerprint);
  });
}

for (const [schemaName, cases] of Object.entries(vectors.payloads)) {
  test(`${schemaName} payloads decode to the Python codes and float rows`, () => {
    const schema = new Schema(vectors.schemas[schemaName].description);
    const replica = new Replica(schema);
    for (const c of cases) {
      const update = replica.apply(c.id, c.base_id, hex(c.payload), c.compressed, c.tick);
      const rows = schema.dequantize(update.snapshot);
      assert.deepEqual(Array.from(update.snapshot.netIds), c.net_ids, c.name);
      update.snapshot.codes.forEach((codes, f) => assert.deepEqual(Array.from(codes), c.codes[f], `${c.name} field ${f}`));
      // Bit-exact floats: Object.is distinguishes -0 and compares doubles exactly.
      assert.equal(rows.length, c.rows.length, c.name);
      rows.forEach((v, i) => assert.ok(Object.is(v, c.rows[i]) || v === c.rows[i], `${c.name} value ${i}: ${v} != ${c.rows[i]}`));
    }
  });
}

test('malformed payloads throw SnapshotDecodeError and leave the base intact', () => {
  const schema = new Schema(vectors.schemas.probe.description);
  const first = vectors.payloads.probe[0];
  const base = decodePayload(schema, hex(first.payload), first.compressed, null, { snapshotId: 1 });
  const before = base.codes.map((c) => Array.from(c));
  for (const bad of vectors.bad_payloads) {
    assert.throws(() => decodePayload(schema, hex(bad.payload), bad.compressed, bad.base_id === null ? null : base), SnapshotDecodeError, bad.name);
  }
  assert.deepEqual(base.codes.map((c) => Array.from(c)), before);
});

test('a payload for another schema is refused', () => {
  const other = new Schema(vectors.schemas.coop.description);
  const c = vectors.payloads.probe[0];
  assert.throws(() => decodePayload(other, hex(c.payload), c.compressed, null), /another replication schema/);
});

test('unpackBits reads LSB-first runs at every width', () => {
  for (let width = 1; width <= 32; width++) {
    const values = Array.from({ length: 37 }, (_, i) => Math.floor(((i * 2654435761) % 2 ** 32) / 2 ** (32 - width)));
    let bits = '';
    for (const v of values) bits += v.toString(2).padStart(width, '0').split('').reverse().join('');
    const bytes = new Uint8Array(Math.ceil(bits.length / 8));
    for (let j = 0; j < bits.length; j++) if (bits[j] === '1') bytes[j >> 3] |= 1 << (j & 7);
    assert.deepEqual(Array.from(unpackBits(bytes, 0, values.length, width)), values, `width ${width}`);
  }
});
