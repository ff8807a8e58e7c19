import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ConnectionClosed,
  InputSigner,
  PolicyViolation,
  RoomFull,
  SchemaRefused,
  ServerMessageError,
  ServerProtocolError,
  connectionClosedFor,
  decodeServerMessage,
  encode,
  protocolErrorFor,
} from '../src/index.js';
import * as m from '../src/messages.js';
import { hex, toHex, vectors } from './vectors.js';

test('signatures and whole InputFrames match Python byte for byte', async () => {
  for (const v of vectors.signing) {
    const signer = await InputSigner.create(hex(v.key));
    const sig = await signer.sign(v.seq, v.tick_ms, hex(v.blob));
    assert.equal(toHex(sig), v.sig);
    assert.equal(toHex(encode(m.inputFrame(v.seq, v.tick_ms, hex(v.blob), sig))), v.frame);
    const viewSig = await signer.sign(v.seq, v.tick_ms, hex(v.blob), v.view);
    assert.equal(toHex(viewSig), v.view_sig);
    assert.equal(toHex(encode(m.inputFrame(v.seq, v.tick_ms, hex(v.blob), viewSig, 7, v.view))), v.view_frame);
  }
});

test('client messages encode to the Python bytes', () => {
  const c = vectors.messages.client;
  assert.equal(toHex(encode(m.hello())), c.hello);
  assert.equal(toHex(encode(m.findOrCreate('us-east', 'coop', 2))), c.find_or_create);
  assert.equal(toHex(encode(m.joinRoom('AbCd1234'))), c.join_room);
  assert.equal(toHex(encode(m.resume('AbCd1234', 'p-1', Uint8Array.of(1, 2)))), c.resume);
  assert.equal(toHex(encode(m.ackMessage(77))), c.ack);
  assert.equal(toHex(encode(m.ping(9, 123456789))), c.ping);
  assert.equal(toHex(encode(m.leave())), c.leave);
  assert.equal(toHex(encode(m.hello({ compact: true }))), vectors.messages.hello_compact);
  assert.equal(toHex(encode(m.inputFrame(1, 2, Uint8Array.of(3), new Uint8Array(16), 9))), vectors.messages.input_frame_ack);
});

test('server messages decode with every field checked', () => {
  for (const { bytes, expect } of vectors.messages.server) {
    const got = decodeServerMessage(hex(bytes));
    for (const [key, value] of Object.entries(expect)) {
      const actual = got[key] instanceof Uint8Array ? toHex(got[key]) : got[key];
      assert.equal(actual, value, `${expect.t}.${key}`);
    }
  }
  for (const bad of vectors.messages.bad_server) assert.throws(() => decodeServerMessage(hex(bad)), ServerMessageError);
});

test('compact Snapshot envelopes decode like their map form', () => {
  for (const { compact, map } of vectors.messages.compact) {
    const a = decodeServerMessage(hex(compact));
    const b = decodeServerMessage(hex(map));
    assert.deepEqual({ ...a, payload: toHex(a.payload) }, { ...b, payload: toHex(b.payload) });
  }
  assert.throws(() => decodeServerMessage(Uint8Array.of(0xc1, 0x08, 1, 1)), ServerMessageError);
  assert.throws(() => decodeServerMessage(Uint8Array.of(0xc1, 0x02, 1, 1, 2)), ServerMessageError);
});

test('every ProtocolError code and close code has its typed error', () => {
  const room = protocolErrorFor('room_full', 'full');
  assert.ok(room instanceof RoomFull && room instanceof ServerProtocolError);
  assert.equal(room.code, 'room_full');
  assert.ok(protocolErrorFor('schema_mismatch', '') instanceof SchemaRefused);
  assert.equal(protocolErrorFor('brand_new', 'x').constructor, ServerProtocolError);
  const kick = connectionClosedFor(1008, 'input frame replayed');
  assert.ok(kick instanceof PolicyViolation && kick instanceof ConnectionClosed);
  assert.equal(kick.resumable, false);
  assert.equal(connectionClosedFor(1006, '').resumable, true);
  assert.equal(connectionClosedFor(4000, '').constructor, ConnectionClosed);
  for (const code of vectors.messages.error_codes) assert.notEqual(protocolErrorFor(code, '').constructor, ServerProtocolError, code);
  assert.ok(vectors.messages.close_codes.length >= 7);
  for (const code of vectors.messages.close_codes) assert.notEqual(connectionClosedFor(code, '').constructor, ConnectionClosed, String(code));
});
