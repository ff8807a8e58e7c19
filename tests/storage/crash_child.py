"""Child process for test_crash.py: write checkpoints in a loop until SIGKILLed.

Usage: python crash_child.py DB_PATH. Prints ``ready`` once the first checkpoint is
committed, then rewrites the room's checkpoint forever with state derived from the tick,
so the parent can check that whatever survives the kill is one whole checkpoint.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from astranet.storage.base import Checkpoint, RoomRecord
from astranet.storage.sqlite import SQLiteStorage

ROOM_ID = "CrashRm1"
# ~600 KB per checkpoint: many pages per write, so a kill often lands mid-transaction.
ROWS = 50_000
ROW = np.dtype([("net_id", "<u4"), ("x", "<f4"), ("y", "<f4")])


def state_for(tick: int) -> dict[str, np.ndarray]:
    rows = np.zeros(ROWS, ROW)
    rows["net_id"] = np.arange(ROWS, dtype="<u4")
    rows["x"] = tick
    rows["y"] = -tick
    return {"rows": rows, "tick_echo": np.array([tick], "<u8")}


def main(path: str) -> None:
    storage = SQLiteStorage(path)
    storage.save_room(RoomRecord(ROOM_ID, "us-east", "coop", 4, time.time()))
    previous = storage.load_checkpoint(ROOM_ID)
    tick = previous.tick + 1 if previous is not None else 1
    storage.save_checkpoint(Checkpoint(ROOM_ID, tick, time.time(), state_for(tick)))
    print("ready", tick, flush=True)
    while True:
        tick += 1
        storage.save_checkpoint(Checkpoint(ROOM_ID, tick, time.time(), state_for(tick)))


if __name__ == "__main__":
    main(sys.argv[1])
