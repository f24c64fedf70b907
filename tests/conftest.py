"""Shared pytest configuration: hypothesis profiles and fixed numpy seeds.

Profiles (pick one with the HYPOTHESIS_PROFILE environment variable):
``default`` (40 examples per property), ``ci`` (25, derandomized so a CI run is
reproducible) and ``thorough`` (200).  No deadline: the first example of a
test may include a Numba compilation of several seconds.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# function_scoped_fixture: the autouse seed fixture below runs once per test, not once per
# example; hypothesis itself re-seeds numpy's global generator before every example.
_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("default", max_examples=40, **_COMMON)
settings.register_profile("ci", max_examples=25, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("thorough", max_examples=200, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _fixed_numpy_seed():
    """Every test starts from the same global numpy state (tests should prefer a local Generator)."""
    np.random.seed(0)
    yield
