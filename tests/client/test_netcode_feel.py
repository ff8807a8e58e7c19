"""A 10 s game through a 150 ms RTT link (75 ms each way + up to 20 ms jitter each way).

One run, two bot clients, several assertions (each a test, sharing the run so the suite pays
for the 10 s once): prediction is bit-exact at every reconciliation, interpolated remote
entities never starve at the default delay, and the smoothed RTT is within 10 % of the
link's configured mean RTT (2 x 75 ms latency + the mean of two uniform 0-20 ms jitters).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from astranet.client import run_frames
from astranet.systems.reconciliation import ReconciliationStats
from tests.client.conftest import Net

LATENCY_MS, JITTER_MS = 75.0, 20.0
CONFIGURED_RTT_MS = 2 * LATENCY_MS + JITTER_MS  # mean of latency + U(0, jitter), both ways
RUN_S = 10.0


@dataclass
class ClientResult:
    recon: ReconciliationStats
    starvations: int
    extrapolated_frames: int
    sampled_frames: int
    rtt_ms: float | None
    remote_ids_seen: int
    snapshots: int


async def _run() -> list[ClientResult]:
    net = Net()
    try:
        await net.start(latency_ms=LATENCY_MS, jitter_ms=JITTER_MS, seed=11)
        pairs = [await net.client(seed=seed) for seed in (1, 2)]
        await asyncio.gather(*(run_frames(world, duration_s=RUN_S) for _, world in pairs))
        results = []
        for client, world in pairs:
            estimate = client.clock_estimate(client.now_ms())
            results.append(
                ClientResult(
                    world.reconciliation.stats,
                    world.interpolation.starvations,
                    world.interpolation.stats.extrapolated,
                    world.interpolation.stats.sampled,
                    estimate.rtt_ms,
                    len(world.view.net_ids),
                    world.receive.applied_total,
                )
            )
        return results
    finally:
        await net.close()


@pytest.fixture(scope="module")
def feel() -> list[ClientResult]:
    return asyncio.run(_run())


@pytest.mark.timeout(60)
def test_prediction_error_is_exactly_zero_at_every_reconciliation(feel: list[ClientResult]):
    for result in feel:
        # ~30 snapshots a second for 10 s, every one compared against a recorded prediction.
        assert result.snapshots > 250
        assert result.recon.compared > 250
        assert result.recon.exact == result.recon.compared
        assert result.recon.max_error == 0.0
        assert result.recon.rewinds == 0


@pytest.mark.timeout(60)
def test_interpolated_remote_entities_never_starve(feel: list[ClientResult]):
    for result in feel:
        assert result.sampled_frames > 500  # 60 fps for ~10 s
        assert result.remote_ids_seen >= 9  # 8 wanderers + the other player (+ ourselves)
        assert result.starvations == 0
        assert result.extrapolated_frames == 0


@pytest.mark.timeout(60)
def test_rtt_estimate_within_ten_percent(feel: list[ClientResult]):
    for result in feel:
        assert result.rtt_ms is not None
        assert abs(result.rtt_ms - CONFIGURED_RTT_MS) <= 0.1 * CONFIGURED_RTT_MS, result.rtt_ms
