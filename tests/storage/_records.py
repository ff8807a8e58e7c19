"""Small records the storage tests write: one room, one player, a 50-row state per tick."""

from __future__ import annotations

import numpy as np

from astranet.storage.base import PlayerRecord, RoomRecord, hash_resume_token

ROW = np.dtype([("net_id", "<u4"), ("x", "<f4"), ("y", "<f4")])


def room_record(room_id: str = "Room0001", created_at: float = 100.0) -> RoomRecord:
    return RoomRecord(room_id, "us-east", "coop", 4, created_at)


def player_record(
    player_id: str = "p1", room_id: str = "Room0001", token: bytes = b"t" * 32
) -> PlayerRecord:
    return PlayerRecord(player_id, room_id, 17, hash_resume_token(token), 101.0)


def state_at(tick: int) -> dict[str, np.ndarray]:
    rows = np.zeros(50, ROW)
    rows["net_id"] = np.arange(50)
    rows["x"] = tick
    return {"rows": rows, "hp": np.full((50, 2), tick % 100, "<i2")}
