"""Test vectors for the JS client, made by the Python reference implementation.

``write_vectors(directory)`` writes ``vectors.json``: schema descriptions, snapshot payloads
(full, delta, spawns/despawns, recycled ids, checksummed, LZ4 and not, and malformed ones),
signed input frames, encoded wire messages, and coop player steps. ``js/test/*.test.js``
read it (path in ``ASTRANET_VECTORS``) and must reproduce every value bit for bit, so any drift
between astranet's codec and js/src is caught in ``make test``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from astranet.ecs import Angle, Bool, ColumnStore, Float, Quantized, Quaternion, Schema, replicated
from astranet.examples.coop.components import SCHEMA as COOP_SCHEMA
from astranet.examples.coop.input import Command, encode_command
from astranet.examples.coop.sim import step_avatar
from astranet.examples.cubes import Cubes
from astranet.net import messages as m
from astranet.net.clock import ServerClock
from astranet.net.envelope import SnapshotEnvelope
from astranet.net.signing import sign
from astranet.replication.codec import FLAG_PREDICTED, compress_payload, encode_delta
from astranet.replication.interpolation import InterpolationDelay, SnapshotBuffer
from astranet.replication.prediction import read_rows
from astranet.replication.snapshot import Snapshot, capture

__all__ = ["describe", "write_vectors"]

_CANONICAL: dict[int, bytes] = {}  # fallback canonical JSON per schema (see describe)
PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@replicated
class Probe:
    pos = Quantized(-100.0, 100.0, 1 / 64, size=3)
    raw = Float()  # 32-bit codes: the wide zigzag path
    yaw = Angle(bits=10)
    rot = Quaternion(bits=9)
    flags = Bool(size=2)


PROBE_SCHEMA = Schema(Probe)
CUBES_SCHEMA = Cubes.schema


def describe(schema: Schema) -> dict[str, Any]:
    """``schema.describe()`` (the canonical schema JSON of docs/protocol.md).

    Until Schema.describe lands this builds the agreed shape itself and re-fingerprints the
    schema over it (which is why the vectors are written in a subprocess).
    """
    if hasattr(schema, "describe"):
        return schema.describe()
    components: list[dict[str, Any]] = []
    for spec in schema.fields:
        component, _, field_name = spec.name.partition(".")
        if not components or components[-1]["name"] != component:
            components.append({"name": component, "fields": []})
        params = {
            p.name: _js_number(getattr(spec.encoding, p.name))
            for p in dataclasses.fields(spec.encoding)  # type: ignore[arg-type]
        }
        components[-1]["fields"].append(
            {
                **params,
                "name": field_name,
                "encoding": type(spec.encoding).__name__,
                "code_bits": list(spec.encoding.code_bits),
                "max_codes": list(spec.encoding.max_codes),
            }
        )
    description = {"format": 1, "components": components}
    canonical = json.dumps(description, sort_keys=True, separators=(",", ":")).encode()
    schema.fingerprint = zlib.crc32(canonical)
    _CANONICAL[id(schema)] = canonical
    return description


def _js_number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _canonical(schema: Schema) -> str:
    if hasattr(schema, "canonical_json"):
        return schema.canonical_json().decode()
    return _CANONICAL[id(schema)].decode()


def _hex(data: bytes) -> str:
    return bytes(data).hex()


def _codes(snapshot: Snapshot) -> list[list[int]]:
    return [np.asarray(c, dtype=np.int64).reshape(-1).tolist() for c in snapshot.codes]


def _rows(schema: Schema, snapshot: Snapshot) -> list[float]:
    store = ColumnStore(schema)
    store.replace_all(snapshot.net_ids, snapshot.dequantize(schema))
    return read_rows(store).reshape(-1).tolist()


def _probe_columns(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    quats = rng.normal(size=(n, 4))
    return [
        rng.uniform(-99, 99, size=(n, 3)),
        rng.normal(size=n).astype(np.float32),
        rng.uniform(-3.1, 3.1, size=n),
        quats,
        rng.integers(0, 2, size=(n, 2)).astype(bool),
    ]


def _snapshot(schema: Schema, sid: int, ids: list[int], columns: list[np.ndarray]) -> Snapshot:
    store = ColumnStore(schema)
    order = np.argsort(ids)
    store.replace_all(np.asarray(ids, dtype=np.uint32)[order], [c[order] for c in columns])
    return capture(store, sid, sid * 2)


def _capture_columns(
    schema: Schema, ids: np.ndarray, columns: list[np.ndarray], sid: int, tick: int
) -> Snapshot:
    store = ColumnStore(schema)
    store.replace_all(ids, columns)
    return capture(store, sid, tick)


def _payload_case(name: str, schema: Schema, cur: Snapshot, base: Snapshot | None, **kw: Any):
    raw = encode_delta(schema, cur, base, checksum=kw.get("checksum", False), prev=kw.get("prev"))
    if kw.get("prev") is not None:
        assert raw[1] & FLAG_PREDICTED, f"{name}: the encoder chose not to predict"
    compressed, is_compressed = compress_payload(raw) if kw.get("compress") else (raw, False)
    return {
        "name": name,
        "base_id": None if base is None else base.id,
        "id": cur.id,
        "tick": cur.tick,
        "payload": _hex(compressed),
        "compressed": is_compressed,
        "net_ids": cur.net_ids.tolist(),
        "codes": _codes(cur),
        "rows": _rows(schema, cur),
    }


def _probe_payloads() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = np.random.default_rng(17)
    schema = PROBE_SCHEMA
    s1 = _snapshot(schema, 1, [1, 2, 3, 5, 8], _probe_columns(rng, 5))
    cols = [c.copy() for c in _probe_columns(rng, 5)]
    # Snapshot 2: ids 2, 3, 5 survive with small moves, 1 and 8 go, 9 and 12 arrive.
    prev_cols = [np.asarray(c) for c in s1.dequantize(schema)]
    keep = [1, 2, 3]  # rows of ids 2, 3, 5 in s1
    moved = [np.concatenate([p[keep], c[:2]]) for p, c in zip(prev_cols, cols, strict=True)]
    moved[0][:3] += rng.uniform(-0.5, 0.5, size=(3, 3))
    moved[1][:2] *= -3.0  # Float: 32-bit codes, the wide-delta path
    s2 = _snapshot(schema, 2, [2, 3, 5, 9, 12], moved)
    # Snapshot 3 (against 2): id 4 spawns below surviving ids (recycled), 3 despawns.
    cols3 = [np.asarray(c) for c in s2.dequantize(schema)]
    rows3 = [0, 2, 3, 4]  # ids 2, 5, 9, 12
    extra = _probe_columns(rng, 1)
    c3 = [np.concatenate([c[rows3], e]) for c, e in zip(cols3, extra, strict=True)]
    c3[2][1] = -c3[2][1]  # a yaw change that wraps
    s3 = _snapshot(schema, 3, [2, 5, 9, 12, 4], c3)
    empty = _snapshot(schema, 4, [], [c[:0] for c in _probe_columns(rng, 0)])
    # Snapshot 5 (tick 9): every position moves by v; snapshot 6 (tick 11) by v * 2 / 3 more,
    # sent against 5 predicted from 3 (ahead 2 / span 3: b + floor((b - a) * 2 / 3) per code).
    velocity = rng.uniform(-0.5, 0.5, size=(len(s3), 3))
    cols5 = [np.array(c, copy=True) for c in s3.dequantize(schema)]
    cols5[0] += velocity
    s5 = _capture_columns(schema, s3.net_ids, cols5, 5, 9)
    cols6 = [np.array(c, copy=True) for c in s5.dequantize(schema)]
    cols6[0] += velocity * 2 / 3
    cols6[1][0] = -cols6[1][0]  # a Float the prediction cannot help
    s6 = _capture_columns(schema, s3.net_ids, cols6, 6, 11)
    cases = [
        _payload_case("full", schema, s1, None),
        _payload_case("full-lz4", schema, s1, None, compress=True),
        _payload_case("delta", schema, s2, s1),
        _payload_case("delta-checksum", schema, s2, s1, checksum=True),
        _payload_case("delta-recycled-id", schema, s3, s2, compress=True),
        _payload_case("delta-to-empty", schema, empty, s3),
        _payload_case("delta-moving", schema, s5, s3),
        _payload_case("delta-predicted", schema, s6, s5, prev=s3),
    ]
    raw = encode_delta(schema, s2, s1)
    full = encode_delta(schema, s1)
    bad = [
        {"name": "truncated", "base_id": 1, "payload": _hex(raw[:-1]), "compressed": False},
        {"name": "trailing", "base_id": 1, "payload": _hex(raw + b"\0"), "compressed": False},
        {"name": "no-base", "base_id": None, "payload": _hex(raw), "compressed": False},
        {
            "name": "fingerprint",
            "base_id": None,
            "payload": _hex(full[:3] + bytes([full[3] ^ 1]) + full[4:]),
            "compressed": False,
        },
        {
            "name": "predicted-unknown-prev",
            "base_id": 1,
            "payload": _hex(
                bytes([raw[0], raw[1] | FLAG_PREDICTED]) + raw[2:5] + b"\x01" + raw[5:]
            ),
            "compressed": False,
        },
        {
            "name": "overlong-varint",
            "base_id": 1,
            "payload": _hex(raw[:2] + b"\x80" + raw[2:]),
            "compressed": False,
        },
        {
            "name": "old-version",
            "base_id": 1,
            "payload": _hex(b"\x01" + raw[1:]),
            "compressed": False,
        },
        {
            "name": "lz4-junk",
            "base_id": 1,
            "payload": _hex(compress_payload(raw * 4)[0] + b"x"),
            "compressed": True,
        },
    ]
    return cases, bad


def _coop_payloads() -> list[dict[str, Any]]:
    """A small coop room: players, drones and the team row, then a delta of movement."""
    from astranet.examples.coop.components import DRONE, PLAYER, TEAM

    store = ColumnStore(COOP_SCHEMA)
    store.spawn(1, Body__kind=TEAM, Team__score=120.0, Team__wave=3.0)
    store.spawn(2, Body__kind=PLAYER, Body__pos=np.array([[1.0, 2.0], [-3.0, 4.5]]))
    store.spawn(40, Body__kind=DRONE, Body__pos=np.linspace(-60, 60, 80).reshape(40, 2))
    s1 = capture(store, 1, 10)
    store["Body.pos"][3:] += 0.078125
    store["Body.heading"][3:] = 1.5
    s2 = capture(store, 2, 11)
    # Two drones of 40 move: the changed rows go as a gap list (FLAG_ROW_LIST).
    store["Body.pos"][[7, 30]] += 0.5
    s3 = capture(store, 3, 12)
    return [
        _payload_case("coop-full", COOP_SCHEMA, s1, None, compress=True),
        _payload_case("coop-delta", COOP_SCHEMA, s2, s1),
        _payload_case("coop-delta-row-list", COOP_SCHEMA, s3, s2),
    ]


def _cubes_payloads() -> list[dict[str, Any]]:
    """The server-load game's one-field schema: sparse movers (row list, no field masks)."""
    store = ColumnStore(CUBES_SCHEMA)
    store.spawn(30, Cube__pos=np.linspace(1.0, 900.0, 60).reshape(30, 2))
    s1 = capture(store, 1, 10)
    store["Cube.pos"][::10] += [1.5, -0.75]
    s2 = capture(store, 2, 11)
    store["Cube.pos"][::10] += [1.5, -0.75]
    store["Cube.pos"][29] = [999.0, 0.0]
    s3 = capture(store, 3, 12)
    store["Cube.pos"][::10] += [1.5, -0.75]  # the same velocity again: exact prediction
    s4 = capture(store, 4, 13)
    return [
        _payload_case("cubes-full", CUBES_SCHEMA, s1, None),
        _payload_case("cubes-delta", CUBES_SCHEMA, s2, s1),
        _payload_case("cubes-delta-older-base", CUBES_SCHEMA, s3, s1),
        _payload_case("cubes-delta-predicted", CUBES_SCHEMA, s4, s3, prev=s2),
    ]


def _signing() -> list[dict[str, Any]]:
    rng = random.Random(5)
    cases = [
        (bytes(range(32)), 42, 1700000000000, bytes.fromhex("0100ff7f")),
        (bytes(32), 0, 0, b""),
    ]
    for _ in range(6):
        key = rng.randbytes(32)
        blob = rng.randbytes(rng.randrange(0, 40))
        cases.append((key, rng.randrange(2**32), rng.randrange(2**53), blob))
    out = []
    for number, (key, seq, tick, blob) in enumerate(cases):
        view = (rng.randrange(2**40), rng.randrange(2**16)) if number % 2 else (1234, 32768)
        view_sig = sign(key, seq, tick, blob, view)
        out.append(
            {
                "key": _hex(key),
                "seq": seq,
                "tick_ms": tick,
                "blob": _hex(blob),
                "sig": _hex(sign(key, seq, tick, blob)),
                "frame": _hex(m.encode(m.InputFrame(seq, tick, blob, sign(key, seq, tick, blob)))),
                "view": list(view),
                "view_sig": _hex(view_sig),
                "view_frame": _hex(
                    m.encode(m.InputFrame(seq, tick, blob, view_sig, 7, view[0], view[1]))
                ),
            }
        )
    return out


def _messages() -> dict[str, Any]:
    client = {
        "hello": m.encode(m.Hello(1)),
        "find_or_create": m.encode(m.FindOrCreate("us-east", "coop", 2)),
        "join_room": m.encode(m.JoinRoom("AbCd1234")),
        "resume": m.encode(m.Resume("AbCd1234", "p-1", b"\x01\x02")),
        "ack": m.encode(m.Ack(77)),
        "ping": m.encode(m.Ping(9, 123456789)),
        "leave": m.encode(m.Leave()),
    }
    server = [
        (m.HelloAck(1), {"t": "HelloAck", "protocol": 1}),
        (m.MatchResult("AbCd1234"), {"t": "MatchResult", "room_id": "AbCd1234"}),
        (
            m.JoinAccepted("AbCd1234", "p-1", 30, bytes(range(32)), b"tok", 7),
            {
                "t": "JoinAccepted",
                "room_id": "AbCd1234",
                "player_id": "p-1",
                "tick_hz": 30,
                "session_key": _hex(bytes(range(32))),
                "resume_token": _hex(b"tok"),
                "entity": 7,
            },
        ),
        (
            m.Snapshot(5, 1234, 3, False, bytes(range(1, 9)), 42),
            {
                "t": "Snapshot",
                "id": 5,
                "server_tick": 1234,
                "base_id": 3,
                "compressed": False,
                "payload": _hex(bytes(range(1, 9))),
                "last_input_seq": 42,
            },
        ),
        (
            m.Pong(3, 1700000000000, 1700000000050, 99),
            {
                "t": "Pong",
                "nonce": 3,
                "client_time_ms": 1700000000000,
                "server_time_ms": 1700000000050,
                "server_tick": 99,
            },
        ),
        (m.RateLimited(250), {"t": "RateLimited", "retry_after_ms": 250}),
        (
            m.ErrorMessage("room_full", "room is full"),
            {"t": "ProtocolError", "code": "room_full", "message": "room is full"},
        ),
    ]
    compact = []
    for fields in [
        (5, 1234, 3, False, bytes(range(1, 9)), 42),
        (7, 2**40, None, True, b"xy", None),
    ]:
        envelope = SnapshotEnvelope(*fields[:5])
        compact.append(
            {
                "compact": _hex(envelope.encode(fields[5], compact=True)),
                "map": _hex(envelope.encode(fields[5])),
            }
        )
    doc = PROTOCOL_DOC.read_text()
    section = doc.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    closes = doc.split("## Close codes", 1)[1].split("\n## ", 1)[0]
    return {
        "hello_compact": _hex(m.encode(m.Hello(1, True))),
        "input_frame_ack": _hex(m.encode(m.InputFrame(1, 2, b"\x03", bytes(16), 9))),
        "compact": compact,
        "error_codes": sorted(set(re.findall(r"^\| `([a-z_]+)`", section, flags=re.M))),
        "close_codes": sorted({int(c) for c in re.findall(r"^\| (\d{4}) \|", closes, flags=re.M)}),
        "client": {name: _hex(data) for name, data in client.items()},
        "server": [{"bytes": _hex(m.encode(msg)), "expect": expect} for msg, expect in server],
        "bad_server": [_hex(b"\x93\x01\x02\x03"), _hex(b"\x81\xa1t\xa4Nope"), _hex(b"\xc1")],
    }


def _coop_steps() -> list[dict[str, Any]]:
    """Random coop player steps from random (on-grid) states: before, blob, dt, after."""
    from astranet.examples.coop.components import PLAYER

    rng = random.Random(11)
    cases = []
    for _ in range(300):
        store = ColumnStore(COOP_SCHEMA)
        start = np.array([[rng.randrange(-3840, 3841) / 64, rng.randrange(-3840, 3841) / 64]])
        store.spawn(
            1,
            Body__kind=PLAYER,
            Body__pos=start,
            Health__hp=float(rng.choice([0, 5, 100])),
            Weapon__cooldown=float(rng.randrange(0, 6)),
        )
        net_id = int(store.net_ids[0])
        command = Command(
            rng.randrange(-127, 128),
            rng.randrange(-127, 128),
            rng.randrange(256),
            rng.random() < 0.5,
        )
        dt_s = rng.choice([1 / 30, 1 / 60, 1 / 20])
        before = read_rows(store)[0].tolist()
        states = []
        for _ in range(rng.randrange(1, 40)):
            step_avatar(store, net_id, command, dt_s)
            states.append(read_rows(store)[0].tolist())
        cases.append(
            {"before": before, "blob": _hex(encode_command(command)), "dt_s": dt_s, "after": states}
        )
    return cases


def _clock() -> list[dict[str, Any]]:
    """Pong samples and, after each, the Python ServerClock's estimates."""
    rng = random.Random(23)
    clock = ServerClock(30)
    out = []
    now = 1000.0
    for _ in range(48):
        send = now
        rtt = rng.uniform(20, 180) if rng.random() > 0.1 else rng.uniform(400, 900)
        recv = send + rtt
        server_time = 5_000_000 + send + rng.uniform(0.3, 0.7) * rtt
        tick = int((server_time - 4_990_000) / (1000 / 30))
        clock.add_pong(send, recv, server_time, tick)
        out.append(
            {
                "pong": [send, recv, server_time, tick],
                "srtt": clock.rtt.srtt_ms,
                "rttvar": clock.rtt.rttvar_ms,
                "offset": clock.offset_ms,
                "tick_at": [recv + 5, clock.estimated_server_tick(recv + 5)],
            }
        )
        now = recv + rng.uniform(100, 600)
    return out


def _interpolation() -> dict[str, Any]:
    """A SnapshotBuffer (one angle column) and an InterpolationDelay, fed and sampled."""
    rng = np.random.default_rng(29)
    buffer = SnapshotBuffer(3, angle_columns=np.array([False, False, True]))
    pushes = []
    for k in range(6):
        ids = np.array([1, 2, 4] if k < 3 else [2, 4, 7], dtype=np.uint32)
        values = rng.uniform(-3, 3, size=(3, 3))
        time_ms = 100.0 * k + (7.0 if k == 4 else 0.0)
        buffer.push(time_ms, ids, values)
        pushes.append({"time": time_ms, "ids": ids.tolist(), "values": values.reshape(-1).tolist()})
    samples = []
    for render in [-50.0, 0.0, 33.3, 150.0, 250.0, 399.0, 407.0, 450.0, 507.0, 560.0, 700.0, 480.0]:
        result = buffer.sample(render)
        samples.append(
            {
                "render": render,
                "ids": result.net_ids.tolist(),
                "values": np.asarray(result.values, dtype=np.float64).reshape(-1).tolist(),
                "status": result.status.value,
            }
        )
    delay = InterpolationDelay(1000 / 30)
    arrivals = []
    client, server = 0.0, 0.0
    jitter_rng = random.Random(31)
    for _ in range(80):
        server += 1000 / 30
        client = server + 50 + jitter_rng.uniform(0, 40)
        arrivals.append([client, server, delay.on_snapshot_arrival(client, server)])
    return {
        "pushes": pushes,
        "samples": samples,
        "starvations": buffer.starvations,
        "arrivals": arrivals,
    }


def write_vectors(directory: Path) -> Path:
    """Write ``vectors.json`` into ``directory``; returns its path."""
    schemas = {
        "probe": describe(PROBE_SCHEMA),
        "coop": describe(COOP_SCHEMA),
        "cubes": describe(CUBES_SCHEMA),
    }
    payloads, bad = _probe_payloads()
    vectors = {
        "schemas": {
            "probe": {
                "description": schemas["probe"],
                "fingerprint": PROBE_SCHEMA.fingerprint,
                "canonical": _canonical(PROBE_SCHEMA),
            },
            "coop": {
                "description": schemas["coop"],
                "fingerprint": COOP_SCHEMA.fingerprint,
                "canonical": _canonical(COOP_SCHEMA),
            },
            "cubes": {
                "description": schemas["cubes"],
                "fingerprint": CUBES_SCHEMA.fingerprint,
                "canonical": _canonical(CUBES_SCHEMA),
            },
        },
        "payloads": {"probe": payloads, "coop": _coop_payloads(), "cubes": _cubes_payloads()},
        "bad_payloads": bad,
        "signing": _signing(),
        "messages": _messages(),
        "coop_steps": _coop_steps(),
        "clock": _clock(),
        "interpolation": _interpolation(),
        "crc32": [{"hex": _hex(b), "crc": zlib.crc32(b)} for b in (b"", b"abc", bytes(range(256)))],
    }
    path = Path(directory) / "vectors.json"
    path.write_text(json.dumps(vectors))
    return path


if __name__ == "__main__":
    print(write_vectors(Path(sys.argv[1])))
