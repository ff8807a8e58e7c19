import assert from 'node:assert/strict';
import { test } from 'node:test';
import { coopGame, encodeInput, roundHalfEven } from '../../astranet/web/coop/game.js';
import { hex, vectors } from './vectors.js';

test('the JS coop step reproduces 300 random Python step_avatar runs bit for bit', () => {
  let steps = 0;
  for (const c of vectors.coop_steps) {
    const state = Float64Array.from(c.before);
    const command = coopGame.decodeInput(hex(c.blob));
    for (const expected of c.after) {
      coopGame.applyInput(state, command, c.dt_s);
      assert.deepEqual(Array.from(state), expected);
      steps += 1;
    }
  }
  assert.ok(steps > 1000);
});

test('roundHalfEven is numpy rounding', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, -2.5001].map(roundHalfEven), [0, 2, 2, -0, -2, 2, -3]);
});

test('encodeInput never builds an impossible speed', () => {
  const blob = encodeInput(1, 1, 0, false);
  const c = coopGame.decodeInput(blob);
  assert.ok(c.moveX * c.moveX + c.moveY * c.moveY <= 127 * 127);
});
