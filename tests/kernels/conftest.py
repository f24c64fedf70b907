"""The ``backend`` fixture: every kernel test runs once per backend in ``BACKENDS``."""
from __future__ import annotations

import pytest

from numbacnn.backends import get_backend

# "cpu" is the backend under test; "reference" runs the same suite against the numpy oracle
# itself, which keeps the harness honest (valid strategies, exact self-agreement) and lets the
# suite run before the CPU kernels exist.  The CUDA simulator suite reuses check_op with "cuda".
BACKENDS = ["cpu", "reference"]


def load_backend(name):
    """get_backend(name), skipping (with the reason) only when its kernel modules are not there yet."""
    try:
        return get_backend(name)
    except ModuleNotFoundError as exc:
        if name == "cpu" and (exc.name or "").startswith("numbacnn.kernels.cpu"):
            pytest.skip(f"cpu backend not importable yet: missing module {exc.name}")
        raise
    except ImportError as exc:
        if name == "cpu" and "numbacnn.kernels.cpu" in str(exc):
            pytest.skip(f"cpu backend not importable yet: {exc}")
        raise


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request):
    return load_backend(request.param)
