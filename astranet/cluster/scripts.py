"""The Lua scripts behind the Redis room directory: each one is one atomic step.

Redis runs a script to completion before any other command, so a script that reads seats and
writes a reservation cannot interleave with another node's: that is the whole concurrency
story (no locks, no WATCH retries). Every script takes the key namespace as ``ARGV[1]`` and
builds its keys from it (see ``docs/cluster.md`` for the key table), so the scripts need a
single Redis primary (or Sentinel), not Redis Cluster, whose slots would need declared keys.

Replies are flat arrays whose first element is a status string: ``ok``, ``redirect`` or the
wire code of a refusal (``room_not_found``, ``room_full``, ``seat_expired``, ``unknown_region``).
Python turns them into :class:`~astranet.cluster.directory.Placement` or errors.
"""

from __future__ import annotations

__all__ = [
    "CLAIM_SEAT",
    "CLOSE_ROOM",
    "FIND_OR_CREATE",
    "HEARTBEAT",
    "JOIN_ROOM",
    "REAP",
    "REGISTER_ROOM",
    "RELEASE",
    "RETIRE",
]

# Shared prelude: key builder, liveness, hold sweeping, reservation bookkeeping.
_PRELUDE = """
local ns = ARGV[1]
local function k(...) return ns .. ':' .. table.concat({...}, ':') end
local function alive(node) return redis.call('EXISTS', k('node', node)) == 1 end
-- Drop a room's expired holds; returns the number still live.
local function live_holds(rid, now)
  redis.call('ZREMRANGEBYSCORE', k('holds', rid), '-inf', now)
  return redis.call('ZCARD', k('holds', rid))
end
-- A seat became a player on its owner: count it in the room and the node's load.
local function seat(rid, node)
  local players = redis.call('HINCRBY', k('room', rid), 'players', 1)
  redis.call('ZINCRBY', k('load'), 1, node)
  return players
end
-- Hold a seat for a redirected joiner behind a single-use token.
local function hold_token(rid, token, now, seat_ms)
  redis.call('ZADD', k('holds', rid), now + seat_ms, 't:' .. token)
  redis.call('SET', k('seat', token), rid, 'PX', seat_ms)
end
-- Keep the room in its open set exactly while it has a seat not taken by a player.
local function reindex(rid, region, mode, players, capacity)
  if tonumber(players) < tonumber(capacity) then
    redis.call('SADD', k('open', region, mode), rid)
  else
    redis.call('SREM', k('open', region, mode), rid)
  end
end
-- Forget a room everywhere (its node is gone, or it closed).
local function forget_room(rid, node)
  local row = redis.call('HMGET', k('room', rid), 'region', 'mode')
  if row[1] then redis.call('SREM', k('open', row[1], row[2]), rid) end
  redis.call('DEL', k('room', rid), k('holds', rid))
  redis.call('SREM', k('rooms'), rid)
  redis.call('SREM', k('noderooms', node), rid)
end
-- Forget a node and every room it still owns.
local function forget_node(node)
  for _, rid in ipairs(redis.call('SMEMBERS', k('noderooms', node))) do
    local owner = redis.call('HGET', k('room', rid), 'node')
    if owner == node or not owner then forget_room(rid, node) end
  end
  redis.call('DEL', k('noderooms', node), k('node', node))
  redis.call('ZREM', k('nodes'), node)
  redis.call('ZREM', k('load'), node)
  for _, region in ipairs(redis.call('SMEMBERS', k('regions'))) do
    redis.call('SREM', k('region', region), node)
  end
end
"""

#: ARGV: ns, region, mode, party_size, capacity, now_ms, hold_ms, seat_ms, asking node,
#: candidate room id, request id, seat token (hex), result_ttl_ms, room_ttl_ms, party token
#: (hex; names the party's holds). -> {status, room_id, node, url, token|'', created 0/1,
#: region, mode}. Idempotent per request id: a node
#: that retries after a timeout gets the first answer back, never a second room.
FIND_OR_CREATE = (
    _PRELUDE
    + """
local region, mode = ARGV[2], ARGV[3]
local party, capacity, now = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local hold_ms, seat_ms, me = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local new_rid, req, token = ARGV[10], ARGV[11], ARGV[12]
local result_ttl, room_ttl = tonumber(ARGV[13]), tonumber(ARGV[14])
local party_token = ARGV[15]
local req_key = k('req', req)
local prior = redis.call('GET', req_key)
if prior then return cjson.decode(prior) end

-- 1. the fullest live room that fits the party (ties: the oldest)
local open = k('open', region, mode)
local best, best_occ, best_created, best_row
for _, rid in ipairs(redis.call('SMEMBERS', open)) do
  local row = redis.call('HMGET', k('room', rid), 'node', 'url', 'players', 'capacity',
                         'created_ms')
  if not row[1] then
    redis.call('SREM', open, rid)  -- its entry expired: the node stopped refreshing it
  elseif alive(row[1]) then
    local occ = tonumber(row[3]) + live_holds(rid, now)
    local created = tonumber(row[5])
    if occ + party <= tonumber(row[4]) and (not best or occ > best_occ
        or (occ == best_occ and created < best_created)) then
      best, best_occ, best_created, best_row = rid, occ, created, row
    end
  end
end

local created = 0
local node, url
if best then
  node, url = best_row[1], best_row[2]
else
  -- 2. claim a new room on the live node of this region with the fewest players
  --    (ties: the node asked, then the smallest id) before anyone creates it
  local target, target_load
  for _, candidate in ipairs(redis.call('SMEMBERS', k('region', region))) do
    if alive(candidate) then
      local load = tonumber(redis.call('ZSCORE', k('load'), candidate) or '0')
      if not target or load < target_load or (load == target_load and target ~= me
          and (candidate == me or candidate < target)) then
        target, target_load = candidate, load
      end
    end
  end
  if not target then return {'unknown_region'} end
  if redis.call('EXISTS', k('room', new_rid)) == 1 then return {'retry'} end
  node = target
  url = redis.call('HGET', k('node', node), 'url')
  best = new_rid
  redis.call('HSET', k('room', best), 'node', node, 'url', url, 'region', region,
             'mode', mode, 'players', 0, 'capacity', capacity, 'created_ms', now, 'tick', 0)
  redis.call('PEXPIRE', k('room', best), room_ttl)
  redis.call('SADD', k('rooms'), best)
  redis.call('SADD', k('noderooms', node), best)
  redis.call('SADD', open, best)
  created = 1
end

-- 3. reserve: a player on the node asked, else a token-held seat; then the party's holds
local players
local reply_token = ''
if node == me then
  players = seat(best, me)
else
  hold_token(best, token, now, seat_ms)
  reply_token = token
  players = tonumber(redis.call('HGET', k('room', best), 'players'))
end
for i = 1, party - 1 do
  redis.call('ZADD', k('holds', best), now + hold_ms, 'p:' .. party_token .. ':' .. i)
end
redis.call('PEXPIRE', k('holds', best), math.max(hold_ms, seat_ms) + room_ttl)
reindex(best, region, mode, players, capacity)
local status = 'ok'
if node ~= me then status = 'redirect' end
local result = {status, best, node, url, reply_token, created, region, mode}
redis.call('SET', req_key, cjson.encode(result), 'PX', result_ttl)
return result
"""
)

#: ARGV: ns, room id, now_ms, asking node, seat_ms, seat token (hex), party token (hex or '').
#: JoinRoom without a seat token: with the party's token one of its held seats (A4), else a
#: free seat. On the owner the seat becomes a player; elsewhere it is held behind the seat
#: token and the reply redirects.
JOIN_ROOM = (
    _PRELUDE
    + """
local rid, now, me, seat_ms, token = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]),
                                     ARGV[6]
local party_prefix = 'p:' .. ARGV[7] .. ':'
local row = redis.call('HMGET', k('room', rid), 'node', 'url', 'players', 'capacity',
                       'region', 'mode')
if not row[1] or not alive(row[1]) then return {'room_not_found'} end
local node, url, players, capacity = row[1], row[2], tonumber(row[3]), tonumber(row[4])
local holds = live_holds(rid, now)
local party_hold
if ARGV[7] ~= '' then
  for _, member in ipairs(redis.call('ZRANGE', k('holds', rid), 0, -1)) do
    if string.sub(member, 1, #party_prefix) == party_prefix then party_hold = member break end
  end
end
if party_hold then
  redis.call('ZREM', k('holds', rid), party_hold)
elseif players + holds >= capacity then
  return {'room_full'}
end
if node == me then
  players = seat(rid, me)
  reindex(rid, row[5], row[6], players, capacity)
  return {'ok', rid, node, url, '', 0, row[5], row[6]}
end
hold_token(rid, token, now, seat_ms)
return {'redirect', rid, node, url, token, 0, row[5], row[6]}
"""
)

#: ARGV: ns, room id, seat token (hex), asking node.
#: JoinRoom with a token. On the owner: the token is spent and its seat becomes a player.
#: Elsewhere: a redirect carrying the same (unspent) token.
CLAIM_SEAT = (
    _PRELUDE
    + """
local rid, token, me = ARGV[2], ARGV[3], ARGV[4]
if redis.call('GET', k('seat', token)) ~= rid then return {'seat_expired'} end
local row = redis.call('HMGET', k('room', rid), 'node', 'url', 'capacity', 'region', 'mode')
if not row[1] or not alive(row[1]) then
  redis.call('DEL', k('seat', token))
  return {'room_not_found'}
end
if row[1] ~= me then return {'redirect', rid, row[1], row[2], token, 0, row[4], row[5]} end
redis.call('DEL', k('seat', token))
redis.call('ZREM', k('holds', rid), 't:' .. token)
local players = seat(rid, me)
reindex(rid, row[4], row[5], players, row[3])
return {'ok', rid, row[1], row[2], '', 0, row[4], row[5]}
"""
)

#: ARGV: ns, room id, owner node, seats freed. A player left or their resume window passed.
RELEASE = (
    _PRELUDE
    + """
local rid, me, n = ARGV[2], ARGV[3], tonumber(ARGV[4])
local row = redis.call('HMGET', k('room', rid), 'node', 'players', 'capacity', 'region', 'mode')
if row[1] ~= me then return {'room_not_found'} end
local players = math.max(0, tonumber(row[2]) - n)
redis.call('HSET', k('room', rid), 'players', players)
redis.call('ZINCRBY', k('load'), -n, me)
reindex(rid, row[4], row[5], players, row[3])
return {'ok', rid}
"""
)

#: ARGV: ns, room id, node, url, region, mode, players, capacity, now_ms, room_ttl_ms, tick.
#: Write (or rewrite, after Redis lost it) one room this node hosts. Refuses to overwrite a
#: room another live node owns: -> {'conflict', node}.
REGISTER_ROOM = (
    _PRELUDE
    + """
local rid, me, url, region, mode = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local players, capacity, now, room_ttl = ARGV[7], ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local owner = redis.call('HGET', k('room', rid), 'node')
if owner and owner ~= me and alive(owner) then return {'conflict', owner} end
if owner and owner ~= me then redis.call('SREM', k('noderooms', owner), rid) end
local created = redis.call('HGET', k('room', rid), 'created_ms') or now
redis.call('HSET', k('room', rid), 'node', me, 'url', url, 'region', region, 'mode', mode,
           'players', players, 'capacity', capacity, 'created_ms', created, 'tick', ARGV[11])
redis.call('PEXPIRE', k('room', rid), room_ttl)
redis.call('SADD', k('rooms'), rid)
redis.call('SADD', k('noderooms', me), rid)
reindex(rid, region, mode, players, capacity)
return {'ok', rid}
"""
)

#: ARGV: ns, room id, owner node. The room closed (empty past its grace, or failed).
CLOSE_ROOM = (
    _PRELUDE
    + """
local rid, me = ARGV[2], ARGV[3]
local owner = redis.call('HGET', k('room', rid), 'node')
if owner and owner ~= me then return {'room_not_found'} end
forget_room(rid, me)
return {'ok', rid}
"""
)

#: ARGV: ns, node, url, regions (comma-separated), now_ms, lease_ms, room_ttl_ms, players,
#: tick, claim_grace_ms, then every room id the node hosts. Renews the node's lease and its
#: rooms' TTLs, and drops directory rooms the node no longer hosts (except rooms claimed for it
#: less than ``claim_grace_ms`` ago, whose first player is still on the way).
#: -> {fresh 0/1, #missing, missing room ids..., rooms with live holds...}: ``fresh`` means the
#: lease had lapsed (or Redis restarted); ``missing`` rooms must be registered again
#: (REGISTER_ROOM); rooms with holds must not be closed as empty.
HEARTBEAT = (
    _PRELUDE
    + """
local me, url, regions, now = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local lease_ms, room_ttl, players, tick = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], ARGV[9]
local claim_grace = tonumber(ARGV[10])
local node_key = k('node', me)
local fresh = 0
if redis.call('EXISTS', node_key) == 0 then
  fresh = 1
  redis.call('HSET', node_key, 'started_ms', now)
end
redis.call('HSET', node_key, 'url', url, 'regions', regions, 'last_seen_ms', now)
redis.call('PEXPIRE', node_key, lease_ms)
redis.call('ZADD', k('nodes'), now, me)
redis.call('ZADD', k('load'), players, me)
for region in string.gmatch(regions, '[^,]+') do
  redis.call('SADD', k('regions'), region)
  redis.call('SADD', k('region', region), me)
end
local hosted, missing, held = {}, {}, {}
for i = 11, #ARGV do
  local rid = ARGV[i]
  hosted[rid] = true
  if redis.call('HGET', k('room', rid), 'node') == me then
    redis.call('PEXPIRE', k('room', rid), room_ttl)
    redis.call('HSET', k('room', rid), 'tick', tick)
    if live_holds(rid, now) > 0 then table.insert(held, rid) end
  else
    table.insert(missing, rid)
  end
end
for _, rid in ipairs(redis.call('SMEMBERS', k('noderooms', me))) do
  if not hosted[rid] then
    local row = redis.call('HMGET', k('room', rid), 'node', 'created_ms')
    if not row[1] then
      redis.call('SREM', k('noderooms', me), rid)
    elseif row[1] == me then
      if now - tonumber(row[2]) > claim_grace then
        forget_room(rid, me)
      else
        redis.call('PEXPIRE', k('room', rid), room_ttl)
      end
    end
  end
end
local reply = {fresh, #missing}
for _, rid in ipairs(missing) do table.insert(reply, rid) end
for _, rid in ipairs(held) do table.insert(reply, rid) end
return reply
"""
)

#: ARGV: ns. Forget every node whose lease expired, with its rooms. Atomic, so any number of
#: nodes may reap at once: each dead node is reaped by exactly one call. -> reaped node ids.
REAP = (
    _PRELUDE
    + """
local reaped = {}
for _, node in ipairs(redis.call('ZRANGE', k('nodes'), 0, -1)) do
  if not alive(node) then
    forget_node(node)
    table.insert(reaped, node)
  end
end
return reaped
"""
)

#: ARGV: ns, node. A clean shutdown: the node and its rooms leave the directory at once.
RETIRE = (
    _PRELUDE
    + """
forget_node(ARGV[2])
return {'ok'}
"""
)
