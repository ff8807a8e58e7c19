// The co-op game in the browser: GameClient + ClientWorld + the coop JS step, drawn on a canvas
// with the pygame client's network overlay. URL parameters: ws (WebSocket URL, default this
// host on port 8788), region (default the server's first), bot=1 (steer automatically: circles
// and shoots, as the Python BotPilot), seed. window.astranet exposes the objects for tests.
import { ClientWorld, GameClient, Schema, SchemaMismatch } from 'astranet-client';
import { COL, KIND, coopGame, encodeInput, fireReady } from './coop/game.js';

const params = new URLSearchParams(location.search);
const canvas = /** @type {HTMLCanvasElement} */ (document.getElementById('arena'));
const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
const overlay = /** @type {HTMLElement} */ (document.getElementById('overlay'));
const hud = /** @type {HTMLElement} */ (document.getElementById('hud'));
const statusLine = /** @type {HTMLElement} */ (document.getElementById('status'));
const ARENA = 60;
const SCALE = canvas.width / (2 * ARENA + 4);
const toScreen = (/** @type {number} */ x, /** @type {number} */ y) => [canvas.width / 2 + x * SCALE, canvas.height / 2 - y * SCALE];

// Fields the JS step relies on, with the grids it assumes (a different server schema would
// silently mispredict, so refuse it with a clear error instead).
const EXPECTED = { 'Body.pos': { encoding: 'Quantized', step: 1 / 64 }, 'Body.heading': { encoding: 'Angle', bits: 8 }, 'Health.hp': { encoding: 'Quantized' }, 'Weapon.cooldown': { encoding: 'Quantized' } };

/** @param {Schema} schema */
function checkSchema(schema) {
  for (const [name, want] of Object.entries(EXPECTED)) {
    const spec = schema.byName.get(name);
    const ok = spec && spec.encoding === want.encoding && (!('step' in want) || spec.params.step === want.step) && (!('bits' in want) || spec.params.bits === want.bits);
    if (!ok) throw new SchemaMismatch(schema.fingerprint, null, `this page needs ${name} as ${JSON.stringify(want)}`);
  }
  const names = schema.fields.map((/** @type {import('astranet-client').FieldSpec} */ f) => f.name);
  const layout = ['Body.pos', 'Body.pos', 'Body.kind', 'Body.heading', 'Health.hp', 'Weapon.cooldown', 'Team.score', 'Team.wave'];
  schema.fields.forEach((/** @type {import('astranet-client').FieldSpec} */ f) => {
    if (layout[f.offset] !== f.name || names.indexOf(f.name) < 0) throw new SchemaMismatch(schema.fingerprint, null, `unexpected layout at ${f.name}`);
  });
}

// -- input ---------------------------------------------------------------------------------
const keys = new Set();
let mouse = /** @type {[number, number] | null} */ (null);
let mouseDown = false;
addEventListener('keydown', (e) => {
  keys.add(e.key.toLowerCase());
  if (e.key === 'F3' || e.key === 'Tab') {
    overlay.classList.toggle('hidden');
    e.preventDefault();
  }
});
addEventListener('keyup', (e) => keys.delete(e.key.toLowerCase()));
canvas.addEventListener('mousemove', (e) => (mouse = [e.offsetX, e.offsetY]));
canvas.addEventListener('mousedown', () => (mouseDown = true));
addEventListener('mouseup', () => (mouseDown = false));

const bot = params.get('bot') === '1';
let botInputs = 0;
const botPhase = Number(params.get('seed') ?? 0) * 1.7;
let aim = 0;

/** @type {ClientWorld | null} */
let world = null;

function ownPosition() {
  if (!world || !world.local.ready) return null;
  const s = world.local.stateRow;
  return [s[COL.X], s[COL.Y]];
}

function nearestDroneAim(/** @type {number[]} */ own) {
  if (!world) return null;
  const { netIds, values } = world.view;
  const w = world.width;
  let best = Infinity;
  let angle = null;
  for (let i = 0; i < netIds.length; i++) {
    if (values[i * w + COL.KIND] !== KIND.DRONE) continue;
    const dx = values[i * w + COL.X] - own[0];
    const dy = values[i * w + COL.Y] - own[1];
    if (dx * dx + dy * dy < best) {
      best = dx * dx + dy * dy;
      angle = Math.atan2(dy, dx);
    }
  }
  return angle;
}

/** The input blob, once per server tick (ClientWorld asks). */
function inputSource() {
  const own = ownPosition();
  let dx = 0;
  let dy = 0;
  let fire = false;
  if (bot) {
    botInputs += 1;
    if (own && !astranet.stopped) {
      const angle = botPhase + botInputs / 90;
      const radius = ARENA * (0.3 + 0.2 * Math.sin(botInputs / 211));
      dx = Math.cos(angle) * radius - own[0];
      dy = Math.sin(angle) * radius - own[1];
      const target = nearestDroneAim(own);
      if (target !== null) {
        aim = target;
        fire = true;
      }
    }
  } else {
    dx = (keys.has('d') || keys.has('arrowright') ? 1 : 0) - (keys.has('a') || keys.has('arrowleft') ? 1 : 0);
    dy = (keys.has('w') || keys.has('arrowup') ? 1 : 0) - (keys.has('s') || keys.has('arrowdown') ? 1 : 0);
    if (own && mouse) {
      const [ox, oy] = toScreen(own[0], own[1]);
      if (mouse[0] !== ox || mouse[1] !== oy) aim = Math.atan2(oy - mouse[1], mouse[0] - ox);
    }
    fire = mouseDown || keys.has(' ');
  }
  const ready = world !== null && world.local.ready && fireReady(world.local.stateRow);
  return encodeInput(dx, dy, aim, fire && ready);
}

// -- drawing -------------------------------------------------------------------------------
const snapshotTimes = /** @type {number[]} */ ([]);
const snapshotSizes = /** @type {number[]} */ ([]);

function draw(/** @type {number} */ fps) {
  if (!world) return;
  const { netIds, values, localNetId } = world.view;
  const w = world.width;
  ctx.fillStyle = '#1e2230';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const [x0, y0] = toScreen(-ARENA, ARENA);
  ctx.strokeStyle = '#5a6078';
  ctx.strokeRect(x0, y0, 2 * ARENA * SCALE, 2 * ARENA * SCALE);
  let score = 0;
  let wave = 0;
  let players = 0;
  let drones = 0;
  let ownHp = null;
  for (let i = 0; i < netIds.length; i++) {
    const kind = values[i * w + COL.KIND];
    const [sx, sy] = toScreen(values[i * w + COL.X], values[i * w + COL.Y]);
    if (kind === KIND.TEAM) {
      score = values[i * w + COL.SCORE];
      wave = values[i * w + COL.WAVE];
    } else if (kind === KIND.PROJECTILE) {
      ctx.fillStyle = '#ffe680';
      ctx.fillRect(sx - 2, sy - 2, 4, 4);
    } else if (kind === KIND.DRONE) {
      drones += 1;
      ctx.fillStyle = '#e8505a';
      ctx.beginPath();
      ctx.arc(sx, sy, 5, 0, 2 * Math.PI);
      ctx.fill();
    } else if (kind === KIND.PLAYER) {
      players += 1;
      const own = netIds[i] === localNetId;
      const hp = values[i * w + COL.HP];
      if (own) ownHp = hp;
      const heading = values[i * w + COL.HEADING];
      ctx.strokeStyle = ctx.fillStyle = hp <= 0 ? '#777' : own ? '#5ad2ff' : '#78e678';
      ctx.beginPath();
      ctx.moveTo(sx, sy);
      ctx.lineTo(sx + 18 * Math.cos(heading), sy - 18 * Math.sin(heading));
      ctx.lineWidth = 2;
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(sx, sy, 9, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  hud.textContent = `SCORE ${score}    WAVE ${wave}    players ${players}    drones ${drones}    hp ${ownHp ?? '-'}`;
  const client = astranet.client;
  if (!client) return;
  const now = performance.now();
  while (snapshotTimes.length && snapshotTimes[0] < now - 1000) {
    snapshotTimes.shift();
    snapshotSizes.shift();
  }
  const clock = client.clockEstimate(now);
  const s = world.stats;
  const newest = world.buffer.newestTimeMs;
  const ahead = newest === null || world.view.renderTimeMs === null ? 'n/a' : `${(newest - world.view.renderTimeMs).toFixed(0)} ms`;
  const avg = snapshotSizes.length ? snapshotSizes.reduce((a, b) => a + b, 0) / snapshotSizes.length : 0;
  overlay.textContent = [
    `RTT ${clock.rttMs === null ? 'n/a' : `${clock.rttMs.toFixed(1)} ms`}${clock.rttvarMs === null ? '' : ` (var ${clock.rttvarMs.toFixed(1)})`}    ${fps.toFixed(0)} fps`,
    `snapshots ${snapshotTimes.length}/s, ${avg.toFixed(0)} B avg${client.compactGranted ? ' (compact)' : ''}`,
    `predictions ${s.exact}/${s.compared} exact`,
    `corrections ${s.rewinds}  max error ${s.maxError.toPrecision(3)}`,
    `interp buffer ${world.buffer.length} snaps, ${ahead} ahead`,
    `interp delay ${world.delay.delayMs.toFixed(0)} ms, jitter ${world.delay.jitterMs.toFixed(1)} ms`,
    `status ${world.view.status}, starvations ${world.buffer.starvations}`,
  ].join('\n');
}

// -- bookkeeping the end-to-end test reads -------------------------------------------------
const firstSeen = new Map();
const moved = new Set();
const scores = new Map(); // server tick -> team score (from the replica, not interpolated)

function track() {
  if (!world || !world.replica.latest) return;
  const { netIds } = world.replica.latest;
  const rows = world.replica.rows;
  const w = world.width;
  for (let i = 0; i < netIds.length; i++) {
    const kind = rows[i * w + COL.KIND];
    if (kind === KIND.TEAM) scores.set(world.replica.latest.tick, rows[i * w + COL.SCORE]);
    if (kind !== KIND.PLAYER) continue;
    const at = [rows[i * w + COL.X], rows[i * w + COL.Y]];
    const first = firstSeen.get(netIds[i]);
    if (!first) firstSeen.set(netIds[i], at);
    else if (Math.hypot(at[0] - first[0], at[1] - first[1]) > 1) moved.add(netIds[i]);
  }
}

/** What the end-to-end test reads (also exposed as window.astranet). */
const astranet = {
  /** @type {GameClient | null} */
  client: null,
  /** @type {ClientWorld | null} */
  world: null,
  stopped: false,
  /** @type {unknown} */
  error: null,
  summary() {
    const s = world?.stats;
    return {
      joined: world !== null,
      entity: world?.local.netId ?? null,
      roomId: this.client?.roomId ?? null,
      playersSeen: firstSeen.size,
      playersMoved: moved.size,
      compared: s?.compared ?? 0,
      exact: s?.exact ?? 0,
      maxError: s?.maxError ?? null,
      mismatches: s?.mismatches ?? [],
      decodeFailures: s?.decodeFailures ?? 0,
      inputsSent: s?.inputsSent ?? 0,
      inputsHeld: s?.inputsHeld ?? 0,
      snapshots: this.client?.stats.snapshots ?? 0,
      compact: this.client?.compactGranted ?? null,
      scores: Object.fromEntries(scores),
      error: this.error ? String(this.error) : null,
    };
  },
};
/** @type {any} */ (window).astranet = astranet;

async function main() {
  const wsUrl = params.get('ws') ?? `ws://${location.hostname}:8788`;
  statusLine.textContent = `connecting to ${wsUrl}`;
  const description = await (await fetch('/schema')).json();
  const schema = new Schema(description);
  checkSchema(schema);
  const region = params.get('region') ?? (await (await fetch('/regions')).json())[0];
  const client = new GameClient({ url: wsUrl, region, gameMode: 'coop', schema });
  astranet.client = client;
  client.addEventListener('reconnecting', () => (statusLine.textContent = 'connection lost: resuming…'));
  client.addEventListener('resumed', () => (statusLine.textContent = 'resumed'));
  client.addEventListener('closed', (/** @type {Event} */ e) => {
    astranet.error = /** @type {CustomEvent} */ (e).detail;
    statusLine.textContent = String(astranet.error);
  });
  client.addEventListener('server-error', (/** @type {Event} */ e) => console.warn(String(/** @type {CustomEvent} */ (e).detail)));
  const accepted = await client.connect();
  statusLine.textContent = `room ${accepted.room_id} as ${accepted.player_id}`;
  const joinedWorld = new ClientWorld({ schema, game: coopGame, link: meteredLink(client), inputSource, tickHz: accepted.tick_hz });
  world = joinedWorld;
  astranet.world = joinedWorld;
  let last = performance.now();
  let fps = 60;
  const frame = () => {
    const now = performance.now();
    const dt = (now - last) / 1000;
    last = now;
    fps += 0.1 * (1 / Math.max(dt, 1e-3) - fps);
    joinedWorld.step(now, dt);
    track();
    draw(fps);
  };
  // A timer, not requestAnimationFrame alone: a hidden tab must keep sending inputs and acks.
  setInterval(frame, 1000 / 60);
}

/** The client as the world's link, counting snapshot arrivals for the overlay. */
function meteredLink(/** @type {GameClient} */ client) {
  return {
    clockEstimate: (/** @type {number} */ now) => client.clockEstimate(now),
    ack: (/** @type {number} */ id) => client.ack(id),
    sendInput: (/** @type {Uint8Array} */ blob) => client.sendInput(blob),
    setView: (/** @type {[number, number] | null} */ view) => client.setView(view),
    drainSnapshots() {
      const received = client.drainSnapshots();
      for (const r of received) {
        snapshotTimes.push(r.arrivalMs);
        snapshotSizes.push(r.payload.length);
      }
      return received;
    },
  };
}

main().catch((exc) => {
  astranet.error = exc;
  statusLine.textContent = String(exc);
  console.error(String(exc));
});
