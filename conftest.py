"""Repository-wide pytest setup: Hypothesis profiles (the plugin itself registers via its entry point)."""

import os

from hypothesis import HealthCheck, settings

# "ci" is derandomised so a red build reproduces; "dev" explores more.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
