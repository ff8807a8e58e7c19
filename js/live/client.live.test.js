// GameClient against a real astranet server (started by tests/js/test_js_live.py; URLs in
// ASTRANET_WS_URL / ASTRANET_HTTP_URL). Run with `node --experimental-websocket` on Node 20.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { coopGame, encodeInput } from '../../astranet/web/coop/game.js';
import { ClientWorld, GameClient, Schema, SchemaMismatch, UnknownRegion } from '../src/index.js';

const WS = process.env.ASTRANET_WS_URL;
const HTTP = process.env.ASTRANET_HTTP_URL;
const description = await (await fetch(`${HTTP}/schema`)).json();
const schema = new Schema(description);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** `promise`, or a rejection after `ms` (a hung await must fail the test, not the run). */
const within = (promise, ms, what) =>
  Promise.race([promise, sleep(ms).then(() => Promise.reject(new Error(`${what}: nothing within ${ms} ms`)))]);
// Each test bounds itself; the runner in tests/js/test_js_live.py bounds the whole run.
const LIMIT = { timeout: 30000 };

/** Step a world at 60 Hz for `ms`, moving in a circle. */
async function play(world, ms) {
  let last = performance.now();
  const end = last + ms;
  while (performance.now() < end) {
    await sleep(16);
    const now = performance.now();
    world.step(now, (now - last) / 1000);
    last = now;
  }
}

function makeWorld(client) {
  let n = 0;
  const inputSource = () => {
    n += 1;
    return encodeInput(Math.cos(n / 20), Math.sin(n / 20), n / 10, false);
  };
  return new ClientWorld({ schema, game: coopGame, link: client, inputSource, tickHz: client.tickHz });
}

/** A TCP proxy we can cut: every connection through it is destroyed by `cut()`. */
async function proxy(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(Number(port), hostname);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `ws://127.0.0.1:${server.address().port}`,
    cut: () => sockets.forEach((s) => s.destroy()),
    close: () => new Promise((r) => server.close(r)),
  };
}

test('join, predict exactly, ack (folded) and leave', LIMIT, async () => {
  const client = new GameClient({ url: WS, region: 'us-east', schema });
  try {
    const accepted = await within(client.connect(), 10000, 'connect');
    assert.equal(typeof accepted.room_id, 'string');
    assert.equal(client.serverSchema, schema.fingerprint);
    const world = makeWorld(client);
    await play(world, 2500);
    assert.ok(world.stats.compared > 20, JSON.stringify(world.stats));
    assert.equal(world.stats.exact, world.stats.compared, JSON.stringify(world.stats.mismatches));
    assert.equal(world.stats.decodeFailures, 0);
    assert.ok(client.stats.acks > 20);
    // Deltas only come against acked bases: the folded acks reached the server.
    assert.ok(world.replica.kept.size > 1);
    const closed = new Promise((r) => client.addEventListener('closed', (e) => r(e.detail)));
    client.leave();
    const error = await within(closed, 10000, 'close after Leave');
    assert.equal(error.code, 1000);
  } finally {
    client.leave();
  }
});

test('an unknown region is a typed UnknownRegion', LIMIT, async () => {
  const client = new GameClient({ url: WS, region: 'mars-north', schema });
  await assert.rejects(client.connect(), UnknownRegion);
});

test('a client built for another schema gets SchemaMismatch at join', LIMIT, async () => {
  const other = structuredClone(description);
  other.components[0].fields[0].step = 1 / 32;
  const client = new GameClient({ url: WS, region: 'us-east', schema: new Schema(other) });
  await assert.rejects(client.connect(), (exc) => exc instanceof SchemaMismatch && /schema/.test(exc.message));
});

test('after the connection is cut the client resumes the same player with backoff', LIMIT, async () => {
  const link = await proxy(WS);
  /** @type {GameClient | undefined} */
  let client;
  try {
    client = new GameClient({ url: link.url, region: 'us-east', schema });
    const accepted = await within(client.connect(), 10000, 'connect');
    const world = makeWorld(client);
    await play(world, 800);
    const events = [];
    client.addEventListener('reconnecting', (e) => events.push(['reconnecting', e.detail.code]));
    const resumed = new Promise((r) => client.addEventListener('resumed', (e) => r(e.detail)));
    link.cut();
    const again = await within(resumed, 15000, 'resume');
    assert.deepEqual(events, [['reconnecting', 1006]]);
    assert.equal(again.player_id, accepted.player_id);
    assert.equal(again.entity, accepted.entity);
    assert.equal(client.epoch, 2);
    const before = world.stats.compared;
    await play(world, 1500);
    assert.ok(world.stats.compared > before, 'prediction continues after the resume');
    assert.equal(world.stats.decodeFailures, 0);
  } finally {
    client?.leave();
    link.cut();
    await link.close();
  }
});
