"""Shared test configuration.

Hypothesis profiles: ``dev`` (default, quick) and ``ci`` (selected when CI=true, more
examples). Codec property tests ask for their own example counts with @settings; the
profile only sets deadlines and health checks.
"""

import gc
import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_collection_finish(session) -> None:  # type: ignore[no-untyped-def]
    """Freeze what collection left alive, as astranet-server freezes its boot heap.

    After collecting the suite a gen-2 collection walks ~200,000 objects (every test module,
    hypothesis, pytest's own state): ~110 ms measured on this machine, and more as the run goes
    on. The timing tests serve and play in this process (snapshot gaps, interpolation
    starvation), so such a pause looked like a server stall. Frozen, a collection walks only
    what the tests themselves allocate.
    """
    gc.collect()
    gc.freeze()
