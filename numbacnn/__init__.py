"""numbacnn: a convolutional neural network engine whose kernels are Numba code."""
from . import config  # noqa: F401  (must run before numba is imported anywhere)

__version__ = "0.1.0"
