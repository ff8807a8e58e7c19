// GameClient over a scripted in-memory WebSocket: WIRE A2 redirects (MatchResult{url,
// seat_token} -> Hello + JoinRoom{room_id, seat_token} at url) for a join and for a Resume.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decode } from '@msgpack/msgpack';
import { GameClient, RoomFull, encode } from '../src/index.js';

const KEY = new Uint8Array(32).fill(7);

/** Scripted servers by URL: each answers a decoded client message with server messages. */
function fakeWebSocket(servers, log) {
  return class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.binaryType = 'blob';
      const script = servers[url];
      if (!script) throw new Error(`no server at ${url}`);
      this.script = script;
      setTimeout(() => {
        this.readyState = 1;
        this.onopen?.();
      }, 1);
    }

    send(bytes) {
      const message = decode(bytes);
      log.push([this.url, message]);
      for (const reply of this.script(message, this) ?? []) {
        setTimeout(() => this.readyState === 1 && this.onmessage?.({ data: encode(reply).slice().buffer }), 1);
      }
    }

    close(code = 1000, reason = '') {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.onclose?.({ code, reason }), 1);
    }
  };
}

const accepted = (room) => ({ t: 'JoinAccepted', room_id: room, player_id: 'p1', tick_hz: 30, session_key: KEY, resume_token: Uint8Array.of(9), entity: 5, schema: null });

test('FindOrCreate answered by a redirect joins at the url with the seat token', async () => {
  const log = [];
  const token = Uint8Array.of(1, 2, 3);
  const servers = {
    'ws://a': (m) => (m.t === 'Hello' ? [{ t: 'HelloAck', protocol: 1 }] : m.t === 'FindOrCreate' ? [{ t: 'MatchResult', room_id: 'Room0001', url: 'ws://b', seat_token: token }] : []),
    'ws://b': (m) => (m.t === 'Hello' ? [{ t: 'HelloAck', protocol: 1 }] : m.t === 'JoinRoom' ? [accepted(m.room_id)] : []),
  };
  const client = new GameClient({ url: 'ws://a', WebSocketImpl: fakeWebSocket(servers, log) });
  const joined = await client.connect();
  assert.equal(joined.room_id, 'Room0001');
  assert.equal(client.roomUrl, 'ws://b');
  const join = log.find(([url, m]) => url === 'ws://b' && m.t === 'JoinRoom');
  assert.ok(join, JSON.stringify(log));
  assert.deepEqual(Array.from(join[1].seat_token), [1, 2, 3]);
  assert.deepEqual(log.filter(([url]) => url === 'ws://b').map(([, m]) => m.t).slice(0, 2), ['Hello', 'JoinRoom']);
  client.leave();
});

test('a refusal after a redirect is the typed error of its code', async () => {
  const servers = {
    'ws://a': (m) => (m.t === 'FindOrCreate' ? [{ t: 'MatchResult', room_id: 'Room0001', url: 'ws://b', seat_token: null }] : []),
    'ws://b': (m) => (m.t === 'JoinRoom' ? [{ t: 'ProtocolError', code: 'room_full', message: '' }] : []),
  };
  const client = new GameClient({ url: 'ws://a', WebSocketImpl: fakeWebSocket(servers, []) });
  await assert.rejects(client.connect(), RoomFull);
});

test('a Resume redirected to another node is repeated there', async () => {
  const log = [];
  let sockets = 0;
  const servers = {
    'ws://a': (m, ws) => {
      if (m.t === 'FindOrCreate') {
        sockets += 1;
        setTimeout(() => ws.close(1006, ''), 20); // the link dies after the join
        return [accepted('Room0002')];
      }
      if (m.t === 'Resume') return [{ t: 'MatchResult', room_id: 'Room0002', url: 'ws://c' }];
      return [];
    },
    'ws://c': (m) => (m.t === 'Resume' ? [accepted(m.room_id)] : []),
  };
  const client = new GameClient({ url: 'ws://a', WebSocketImpl: fakeWebSocket(servers, log) });
  await client.connect();
  const resumed = await new Promise((resolve) => client.addEventListener('resumed', (e) => resolve(e.detail)));
  assert.equal(resumed.room_id, 'Room0002');
  assert.equal(client.roomUrl, 'ws://c');
  assert.equal(client.epoch, 2);
  const resumes = log.filter(([, m]) => m.t === 'Resume').map(([url, m]) => [url, m.player_id]);
  assert.deepEqual(resumes, [['ws://a', 'p1'], ['ws://c', 'p1']]);
  assert.equal(sockets, 1);
  client.leave();
});
