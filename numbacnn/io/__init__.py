"""Model files (HDF5): ``save_model``, ``load_model``, ``load_weights_by_name``, ``ModelFileError``."""
from .hdf5 import (FORMAT_VERSION, ModelFile, ModelFileError, load_model, load_weights_by_name, read_weights,
                   save_model)

__all__ = ["FORMAT_VERSION", "ModelFile", "ModelFileError", "load_model", "load_weights_by_name", "read_weights",
           "save_model"]
