"""Hypothesis strategies for every wire message, over the full value ranges of each field."""

from __future__ import annotations

from hypothesis import strategies as st

from astranet.net import messages as m
from astranet.net.limits import (
    MAX_ERROR_MESSAGE_CHARS,
    MAX_INPUT_BLOB_BYTES,
    MAX_PLAYER_ID_CHARS,
    MAX_REGION_CHARS,
    MAX_RESUME_TOKEN_BYTES,
    MAX_TICK_HZ,
    U32_MAX,
    U64_MAX,
)

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

u32 = st.integers(0, U32_MAX)
u64 = st.integers(0, U64_MAX)
room_ids = st.text(ALNUM, min_size=8, max_size=8)
game_modes = st.text(ALNUM + "_-", min_size=1, max_size=32)
player_ids = st.text(min_size=1, max_size=MAX_PLAYER_ID_CHARS)
tokens = st.binary(max_size=MAX_RESUME_TOKEN_BYTES)

CLIENT_STRATEGIES = {
    m.Hello: st.builds(m.Hello, u32, st.none() | st.booleans()),
    m.FindOrCreate: st.builds(
        m.FindOrCreate, st.text(max_size=MAX_REGION_CHARS), game_modes, st.integers(1, 4)
    ),
    m.JoinRoom: st.builds(m.JoinRoom, room_ids),
    m.Resume: st.builds(m.Resume, room_ids, player_ids, tokens),
    m.InputFrame: st.builds(
        m.InputFrame,
        u32,
        u64,
        st.binary(max_size=MAX_INPUT_BLOB_BYTES),
        st.binary(min_size=16, max_size=16),
        st.none() | u32,
    ),
    m.Ack: st.builds(m.Ack, u32),
    m.Ping: st.builds(m.Ping, u64, u64),
    m.Leave: st.builds(m.Leave),
    m.Command: st.builds(
        m.Command,
        u32,
        st.text(min_size=1, max_size=64),
        st.binary(max_size=1024),
        st.binary(min_size=16, max_size=16),
    ),
}

SERVER_STRATEGIES = {
    m.HelloAck: st.builds(m.HelloAck, u32, st.none() | st.booleans()),
    m.MatchResult: st.builds(m.MatchResult, room_ids),
    m.JoinAccepted: st.builds(
        m.JoinAccepted,
        room_ids,
        player_ids,
        st.integers(1, MAX_TICK_HZ),
        st.binary(min_size=32, max_size=32),
        tokens,
        st.none() | u32,
    ),
    m.Snapshot: st.builds(
        m.Snapshot,
        u32,
        u64,
        st.none() | u32,
        st.booleans(),
        st.binary(max_size=2048),
        st.none() | u32,
    ),
    m.Pong: st.builds(m.Pong, u64, u64, u64, u64),
    m.RateLimited: st.builds(m.RateLimited, u32),
    m.Events: st.builds(
        m.Events,
        st.integers(0, U32_MAX - 8),
        st.lists(
            st.tuples(u64, st.text(min_size=1, max_size=64), st.binary(max_size=64)),
            min_size=1,
            max_size=8,
        ).map(tuple),
    ),
    m.ErrorMessage: st.builds(
        m.ErrorMessage,
        st.text(ALNUM + "_", min_size=1, max_size=64),
        st.text(max_size=MAX_ERROR_MESSAGE_CHARS),
    ),
}

client_messages = st.one_of(*CLIENT_STRATEGIES.values())
server_messages = st.one_of(*SERVER_STRATEGIES.values())
