// Decode benchmark of the browser client's snapshot codec, in Node (V8, as in Chromium).
// Usage: node benchmarks/js_decode.mjs CASES.json [--repeats N]  (benchmarks/browser_decode.py
// writes CASES.json with the Python reference and runs this). Prints one JSON object: per
// case the median milliseconds of decodePayload (LZ4 + delta decode), and of decode plus
// Schema.dequantize (the float rows the client systems use), over N timed runs after warm-up.
import { readFileSync } from 'node:fs';
import { decodePayload } from '../js/src/codec.js';
import { Schema } from '../js/src/schema.js';

const [path, ...rest] = process.argv.slice(2);
const repeats = rest[0] === '--repeats' ? Number(rest[1]) : 300;
const data = JSON.parse(readFileSync(path, 'utf8'));
const schema = new Schema(data.schema);
const hex = (s) => Uint8Array.from(Buffer.from(s, 'hex'));
const base = decodePayload(schema, hex(data.base.payload), data.base.compressed, null, { snapshotId: 1 });

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const results = {};
for (const c of data.cases) {
  const payload = hex(c.payload);
  const against = c.delta ? base : null;
  for (let i = 0; i < 200; i++) schema.dequantize(decodePayload(schema, payload, c.compressed, against));
  const decode = [];
  const withRows = [];
  for (let i = 0; i < repeats; i++) {
    let t0 = process.hrtime.bigint();
    const snapshot = decodePayload(schema, payload, c.compressed, against);
    let t1 = process.hrtime.bigint();
    decode.push(Number(t1 - t0) / 1e6);
    t0 = process.hrtime.bigint();
    schema.dequantize(decodePayload(schema, payload, c.compressed, against));
    t1 = process.hrtime.bigint();
    withRows.push(Number(t1 - t0) / 1e6);
    if (snapshot.netIds.length !== c.rows) throw new Error(`${c.name}: decoded ${snapshot.netIds.length} rows`);
  }
  results[c.name] = { bytes: payload.length, rows: c.rows, decode_ms: median(decode), decode_dequantize_ms: median(withRows) };
}
console.log(JSON.stringify({ node: process.version, repeats, results }));
