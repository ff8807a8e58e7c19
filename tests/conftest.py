"""Shared test configuration.

Hypothesis profiles: ``dev`` (default, quick) and ``ci`` (selected when CI=true, more
examples). Codec property tests ask for their own example counts with @settings; the
profile only sets deadlines and health checks.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
