"""numbacnn: a convolutional neural network engine whose kernels are Numba code."""
from . import config  # noqa: F401  (must run before numba is imported anywhere)
from . import backends  # noqa: F401,E402  (registers get_backend: models are built on a backend by name)

__version__ = "0.1.0"

# The Keras-style API (numbacnn/keras.py): nc.Sequential, nc.Model, nc.Input, nc.load_model,
# nc.layers, nc.optimizers, nc.callbacks.
from . import callbacks, layers  # noqa: E402
from . import optim as optimizers  # noqa: E402
from .keras import Input, Model, Sequential, load_model  # noqa: E402

__all__ = ["Sequential", "Model", "Input", "load_model", "layers", "optimizers", "callbacks", "__version__"]
