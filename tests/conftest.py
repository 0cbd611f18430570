"""Test-session setup: one JAX device per CPU core (at most 2), as the ``jaxpo`` commands do.

Sweeps in the tests (the learning tests train 8 seeds at once) shard their agents over these
devices and so use the cores. The sizes in the tests (chunks of 2 and 4 agents, 4 or 6
agents) assume 1 or 2 devices, hence the cap. The split must happen before JAX starts, hence
here, before any test module is imported.
"""

import os

import numpy as np
import pytest

from jaxpo import sweep

#: host devices of the test session.
TEST_DEVICES = min(os.cpu_count() or 1, 2)

sweep.use_host_devices(TEST_DEVICES)


# --------------------------------------------------------------------------- fixtures
# Plain shared builders (tiny configs, networks, parameters, batches, rollouts) are in
# helpers.py: module-level code needs them too.


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh NumPy generator seeded 0, for a test's random data."""
    return np.random.default_rng(0)
