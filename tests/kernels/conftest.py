"""The ``backend`` fixture: every kernel test runs once per backend in ``BACKENDS``."""
from __future__ import annotations

import pytest

from numbacnn.backends import get_backend

# "cpu" is the backend under test; "reference" runs the same suite against the numpy oracle
# itself, which keeps the harness honest (valid strategies, exact self-agreement).  The CUDA
# simulator suite (tests/cuda) reuses check_op with "cuda".
BACKENDS = ["cpu", "reference"]


def load_backend(name):
    """get_backend(name): an import error of a kernel module fails the test, it never skips."""
    return get_backend(name)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request):
    return load_backend(request.param)
