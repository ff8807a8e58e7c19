import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff, InterpolationDelay, ServerClock, SnapshotBuffer } from '../src/index.js';
import { vectors } from './vectors.js';

const close = (a, b, what) => assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} != ${b}`);

test('ServerClock follows astranet.net.clock sample for sample', () => {
  const clock = new ServerClock(30);
  for (const [i, v] of vectors.clock.entries()) {
    clock.addPong(...v.pong);
    close(clock.rtt.srttMs, v.srtt, `srtt ${i}`);
    close(clock.rtt.rttvarMs, v.rttvar, `rttvar ${i}`);
    close(clock.offsetMs, v.offset, `offset ${i}`);
    close(clock.estimatedServerTick(v.tick_at[0]), v.tick_at[1], `tick ${i}`);
  }
});

test('SnapshotBuffer samples and InterpolationDelay match astranet.replication.interpolation', () => {
  const data = vectors.interpolation;
  const buffer = new SnapshotBuffer(3, { angleColumns: [2] });
  for (const p of data.pushes) buffer.push(p.time, Uint32Array.from(p.ids), Float64Array.from(p.values));
  for (const s of data.samples) {
    const got = buffer.sample(s.render);
    assert.equal(got.status, s.status, `status at ${s.render}`);
    assert.deepEqual(Array.from(got.netIds), s.ids, `ids at ${s.render}`);
    got.values.forEach((v, i) => close(v, s.values[i], `value ${i} at ${s.render}`));
  }
  assert.equal(buffer.starvations, data.starvations);
  const delay = new InterpolationDelay(1000 / 30);
  for (const [client, server, expected] of data.arrivals) close(delay.onSnapshotArrival(client, server), expected, 'delay');
});

test('Backoff grows exponentially within its jitter band and gives up after 30 s', () => {
  const backoff = new Backoff({ random: () => 0.999 });
  const delays = Array.from({ length: 8 }, () => backoff.nextDelay());
  const bases = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5];
  delays.forEach((d, i) => assert.ok(d <= bases[i] && d >= bases[i] / 2, `${i}: ${d}`));
  assert.equal(backoff.expired(29.9), false);
  assert.equal(backoff.expired(30), true);
  backoff.reset();
  assert.ok(backoff.nextDelay() <= 0.1);
});
