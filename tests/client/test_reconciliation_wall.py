"""Server corrections: a wall only the server knows about (WalledDots vs plain-dots prediction).

The bot walks toward +x into the wall; when reconciliation first corrects it, it turns to walk
along +y, as a player would. Inputs already in flight still pushed into the wall, so
corrections continue until the server's reply to the first turned input arrives: one RTT, plus
the wait for the server's next input tick and the link jitter. After that every
reconciliation is exact and the displayed avatar sits on the wall, with no snap.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from astranet.client import run_frames
from tests.client.conftest import WALL_X, Net, WalledDots, heading_input

LATENCY_MS, JITTER_MS = 75.0, 20.0
TICK_MS = 1000.0 / 30


@pytest.mark.timeout(30)
async def test_reconciliation_converges_within_one_rtt_after_a_server_correction(net: Net):
    await net.start(WalledDots(), latency_ms=LATENCY_MS, jitter_ms=JITTER_MS, seed=5)
    heading = {"angle": 0.0}
    client, world = await net.client(heading_input(lambda: heading["angle"]))
    stats = world.reconciliation.stats
    first_correction_ms: float | None = None
    last_mismatch_ms: float | None = None
    seen = 0
    max_display_jump = 0.0
    previous_shown: np.ndarray | None = None

    def watch(view) -> None:
        nonlocal first_correction_ms, last_mismatch_ms, seen, max_display_jump, previous_shown
        now = client.now_ms()
        new_errors = list(stats.errors)[seen:] if len(stats.errors) > seen else []
        seen = len(stats.errors)
        if any(error > 0.0 for error in new_errors):
            if first_correction_ms is None:
                first_correction_ms = now
                heading["angle"] = math.pi / 2  # bumped into something: walk along it
            last_mismatch_ms = now
        shown = view.row(world.local.net_id) if world.local.net_id is not None else None
        if shown is not None and previous_shown is not None:
            max_display_jump = max(max_display_jump, float(np.abs(shown - previous_shown).max()))
        previous_shown = None if shown is None else shown.copy()

    # The avatar starts at the origin and moves ~0.33 units per input: it reaches the wall
    # after 30 inputs (1 s); 4 s leaves ample time to converge afterwards.
    await run_frames(world, duration_s=4.0, on_frame=watch)

    assert first_correction_ms is not None and last_mismatch_ms is not None
    rtt_ms = client.clock_estimate(client.now_ms()).rtt_ms
    assert rtt_ms is not None
    converged_ms = last_mismatch_ms - first_correction_ms
    # One RTT, plus the server's wait for its next input tick, plus jitter on both legs.
    assert converged_ms <= rtt_ms + TICK_MS + 2 * JITTER_MS, (converged_ms, rtt_ms)
    # Converged: the predicted avatar is on the wall and the last comparisons were exact.
    assert float(world.local.state()[0]) == WALL_X
    assert list(stats.errors)[-10:] == [0.0] * 10
    # Smoothing: a frame never moves the shown avatar by more than a few steps' worth
    # (0.33 units per input; an unsmoothed correction would jump by the whole overshoot).
    assert max_display_jump < 1.0, max_display_jump
