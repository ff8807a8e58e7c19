"""Glenn Fiedler's "Snapshot Compression" cube scenario, measured through astranet's codec.

Scene (deterministic, vectorised, cheap): 901 cubes. Cube 0 is the player; 900 cubes rest on a
30 x 30 grid (1.6 units apart). The player follows a Lissajous path through the grid at about
10 units/s for ``--seconds`` minus the last 5 s, then parks. A resting cube that the player
touches (centre distance < 1.2) is pushed out of the player and given the player's velocity
plus an outward kick; moving cubes slide with Coulomb friction (6 units/s^2 deceleration, so
they stop after about a second and a half), roll about the axis perpendicular to their motion,
and are clamped to the arena. Cubes do not collide with each other (no chain reactions), so at
any moment only the cubes the player touched in the last second or so move, as in the
article. ``interacting`` is set for cubes within 2.5 units of the player.

Sampled at 60 Hz. Per snapshot we count the payload for four encodings, side by side:

1. ``uncompressed``: float32 position, quaternion and velocity, plus the bit (321 bits/cube,
   the article's starting point).
2. ``quantized``: astranet full payload (no delta): position 1/512 over +-256 (19 bits),
   smallest-three quaternion (2 + 3 x 9 bits), velocity 1/128 over +-32 (14 bits), one bit.
3. ``delta``: astranet payload relative to the client's newest acked snapshot.
4. ``delta_lz4``: the same, LZ4-framed when that is smaller (what the server sends).

Acks: the client acks every snapshot it receives; the ack reaches the server ``--rtt-ms``
(default 100 ms, i.e. 6 snapshots) after the snapshot was sent; ``--loss`` (2 %) of snapshots
are never received and so never acked. Every received payload is decoded by a real
:class:`~astranet.replication.Replica` and checked against the server's quantized state.
Envelope (msgpack ``Snapshot`` fields) and transport overhead are not counted, as in the article.

Usage: ``python benchmarks/cubes.py [--json] [--plot docs/img/cubes_bandwidth.png]``.
Results: docs/benchmarks.md, section "Replication: cube scenario (bandwidth)".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from astranet.ecs import Bool, ColumnStore, Quantized, Quaternion, Schema, replicated
from astranet.replication import (
    ClientBaseline,
    Replica,
    SnapshotHistory,
    compress_payload,
    encode_delta,
)

HZ = 60
DT_S = 1.0 / HZ
GRID = 30
SPACING = 1.6
PUSH_RADIUS = 1.2
INTERACT_RADIUS = 2.5
FRICTION = 6.0  # units/s^2 of Coulomb deceleration
ROLL_RADIUS = 0.5
ARENA = 60.0
REST_TAIL_S = 5.0  # the player parks for the last 5 s so every cube comes to rest
UNCOMPRESSED_BITS_PER_CUBE = 3 * 32 + 4 * 32 + 3 * 32 + 1  # 321, as in the article


@replicated
class Cube:
    position = Quantized(-256.0, 256.0, 1 / 512, size=3)
    orientation = Quaternion(bits=9)
    velocity = Quantized(-32.0, 32.0, 1 / 128, size=3)
    interacting = Bool()


SCHEMA = Schema(Cube)


def _hamilton(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise quaternion product a*b, x,y,z,w layout."""
    ax, ay, az, aw = a.T
    bx, by, bz, bw = b.T
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=1,
    )


class CubeScene:
    """The deterministic push/friction model; state lives in the ColumnStore's columns."""

    def __init__(self, store: ColumnStore, seconds: float) -> None:
        self.store = store
        self.move_until_s = max(0.0, seconds - REST_TAIL_S)
        side = (np.arange(GRID) - (GRID - 1) / 2) * SPACING
        gx, gy = np.meshgrid(side, side)
        grid = np.stack([gx.ravel(), gy.ravel(), np.full(GRID * GRID, 0.5)], axis=1)
        positions = np.vstack([[[-30.0, -30.0, 0.5]], grid]).astype(np.float32)
        identity = np.tile(np.float32([0, 0, 0, 1]), (len(positions), 1))
        store.spawn(len(positions), Cube__position=positions, Cube__orientation=identity)
        self.t_s = 0.0

    def _player_at(self, t_s: float) -> np.ndarray:
        t = min(t_s, self.move_until_s)
        return np.array([26.0 * np.sin(2 * np.pi * t / 17.0), 26.0 * np.sin(2 * np.pi * t / 11.0)])

    def step(self) -> int:
        """Advance one 60 Hz step; returns how many cubes are moving."""
        pos, vel = self.store["Cube.position"], self.store["Cube.velocity"]
        rot, touch = self.store["Cube.orientation"], self.store["Cube.interacting"]
        before, self.t_s = self._player_at(self.t_s), self.t_s + DT_S
        player = self._player_at(self.t_s)
        player_vel = (player - before) / DT_S
        pos[0, :2], vel[0, :2] = player, player_vel
        rest = slice(1, None)
        offset = pos[rest, :2] - player
        dist = np.maximum(np.linalg.norm(offset, axis=1), 1e-6)
        normal = offset / dist[:, None]
        hit = dist < PUSH_RADIUS
        kick = np.maximum(np.linalg.norm(player_vel), 2.0)
        vel[rest, :2][hit] = 0.5 * player_vel + normal[hit] * kick
        pos[rest, :2][hit] = player + normal[hit] * PUSH_RADIUS
        touch[rest] = dist < INTERACT_RADIUS
        touch[0] = False
        # Friction and integration for the pushed cubes only (the player is kinematic).
        v = vel[rest, :2]
        speed = np.linalg.norm(v, axis=1)
        moving = speed > 0
        slowed = np.maximum(speed - FRICTION * DT_S, 0.0)
        v[moving] *= (slowed[moving] / speed[moving])[:, None]
        vel[rest, :2] = v
        pos[rest, :2] = np.clip(pos[rest, :2] + v * DT_S, -ARENA, ARENA)
        # Rolling: angular velocity (up x v) / r, applied as a small rotation quaternion.
        rolling = np.flatnonzero(moving) + 1
        if len(rolling):
            v_roll = vel[rolling, :2]
            s = np.linalg.norm(v_roll, axis=1)
            axis = np.stack([-v_roll[:, 1], v_roll[:, 0], np.zeros_like(s)], axis=1)
            axis /= np.maximum(s, 1e-9)[:, None]
            half = 0.5 * s * DT_S / ROLL_RADIUS
            dq = np.concatenate([axis * np.sin(half)[:, None], np.cos(half)[:, None]], axis=1)
            q = _hamilton(dq, rot[rolling].astype(np.float64))
            rot[rolling] = q / np.linalg.norm(q, axis=1, keepdims=True)
        return int(np.count_nonzero(moving)) + int(np.any(player_vel != 0))


@dataclass
class Totals:
    bytes_per_tick: dict[str, list[int]] = field(
        default_factory=lambda: {"uncompressed": [], "quantized": [], "delta": [], "delta_lz4": []}
    )
    moving: list[int] = field(default_factory=list)
    fulls: int = 0


def run(seconds: float, loss: float, rtt_ms: float, seed: int) -> Totals:
    store = ColumnStore(SCHEMA)
    scene = CubeScene(store, seconds)
    history = SnapshotHistory(store)
    baseline, replica = ClientBaseline(), Replica(SCHEMA)
    rng = np.random.default_rng(seed)
    ack_delay = round(rtt_ms / 1000 * HZ)
    in_flight: deque[tuple[int, int]] = deque()  # (tick the ack arrives, snapshot id)
    totals = Totals()
    uncompressed = (UNCOMPRESSED_BITS_PER_CUBE * len(store) + 7) // 8
    for tick in range(int(seconds * HZ)):
        while in_flight and in_flight[0][0] <= tick:
            baseline.ack(in_flight.popleft()[1])
        totals.moving.append(scene.step())
        snap = history.capture(tick)
        base = history.get(baseline.acked_id)
        full = encode_delta(SCHEMA, snap)
        delta = encode_delta(SCHEMA, snap, base)
        payload, compressed = compress_payload(delta)
        baseline.record_sent(snap.id, None)
        totals.fulls += base is None
        for name, size in (
            ("uncompressed", uncompressed),
            ("quantized", len(full)),
            ("delta", len(delta)),
            ("delta_lz4", len(payload)),
        ):
            totals.bytes_per_tick[name].append(size)
        if rng.random() < loss:
            continue  # lost: never received, never acked
        update = replica.apply(snap.id, base.id if base else None, payload, compressed, tick)
        if not update.snapshot.same_state(snap):
            raise AssertionError(f"client state diverged at tick {tick}")
        in_flight.append((tick + ack_delay, snap.id))
    return totals


def summarize(totals: Totals) -> dict[str, float]:
    bps = {name: float(np.mean(sizes)) * 8 * HZ for name, sizes in totals.bytes_per_tick.items()}
    moving = np.asarray(totals.moving)
    # At rest: no cube has moved for the last 10 ticks (so the acked base is at rest too).
    still = np.convolve(moving == 0, np.ones(10), mode="full")[: len(moving)] >= 10
    final = np.asarray(totals.bytes_per_tick["delta_lz4"])
    at_rest = float(np.mean(final[still])) * 8 * HZ if still.any() else float("nan")
    return {
        "cubes": 901,
        "snapshots": len(moving),
        "uncompressed_bps": bps["uncompressed"],
        "quantized_bps": bps["quantized"],
        "delta_bps": bps["delta"],
        "final_bps": bps["delta_lz4"],
        "reduction": 1.0 - bps["delta_lz4"] / bps["uncompressed"],
        "at_rest_bps": at_rest,
        "mean_moving_cubes": float(moving.mean()),
        "full_snapshots_sent": totals.fulls,
    }


def plot(totals: Totals, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=[1.6, 1])
    seconds = np.arange(len(totals.moving)) / HZ
    kernel = np.ones(HZ) / HZ  # 1 s moving average
    labels = {
        "uncompressed": "float32",
        "quantized": "+ quantization",
        "delta": "+ delta vs acked",
        "delta_lz4": "+ LZ4",
    }
    for name, sizes in totals.bytes_per_tick.items():
        # Trailing 1 s average, only where a full second of samples exists (no edge dips).
        rate = np.convolve(np.asarray(sizes, float) * 8 * HZ, kernel, mode="valid")
        left.plot(seconds[HZ - 1 :], rate / 1000, label=labels[name])
    left.set_yscale("log")
    left.set_xlabel("time (s)")
    left.set_ylabel("kbit/s (1 s average)")
    left.set_title("901 cubes at 60 Hz, 2 % loss, 100 ms RTT")
    left.legend(fontsize=8)
    means = [np.mean(s) * 8 * HZ / 1000 for s in totals.bytes_per_tick.values()]
    right.bar([labels[n] for n in totals.bytes_per_tick], means)
    right.set_yscale("log")
    right.set_ylabel("mean kbit/s")
    right.tick_params(axis="x", labelsize=8, rotation=20)
    for i, m in enumerate(means):
        right.text(i, m, f"{m:,.0f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--loss", type=float, default=0.02)
    parser.add_argument("--rtt-ms", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", metavar="PNG", help="write the bandwidth plot here")
    args = parser.parse_args(argv)
    totals = run(args.seconds, args.loss, args.rtt_ms, args.seed)
    summary = summarize(totals)
    if args.plot:
        plot(totals, args.plot)
    if args.json:
        print(json.dumps(summary))
        return 0
    for key, value in summary.items():
        shown = f"{value / 1000:12,.1f} kbit/s" if key.endswith("_bps") else f"{value:12,.4g}"
        print(f"{key:>22}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
