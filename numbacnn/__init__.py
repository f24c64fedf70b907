"""numbacnn: a convolutional neural network engine whose kernels are Numba code."""
from . import config  # noqa: F401  (must run before numba is imported anywhere)
from . import backends  # noqa: F401,E402  (registers get_backend: models are built on a backend by name)

__version__ = "0.1.0"
