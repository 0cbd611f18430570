"""Test-session setup: one JAX device per CPU core, as the ``jaxpo`` commands use.

Sweeps in the tests (the learning tests train 8 seeds at once) shard their agents over these
devices and so use every core. The split must happen before JAX starts, hence here, before
any test module is imported. Subprocess tests set their own ``XLA_FLAGS``.
"""

from jaxpo import sweep

sweep.use_host_devices()
