"""Datasets (built-in shapes, IDX, CIFAR-10, npz), image files and augmentation."""
from .augment import make_augment
from .builtin import CLASS_NAMES as BUILTIN_CLASS_NAMES, make_shapes
from .images import load_image, load_images, read_image, resize, save_image
from .loaders import (DataError, Splits, channel_stats, load_dataset, load_splits, read_idx,
                      standardize, train_test_split)

__all__ = ["BUILTIN_CLASS_NAMES", "DataError", "Splits", "channel_stats", "load_dataset", "load_image",
           "load_images", "load_splits", "make_augment", "make_shapes", "read_idx", "read_image", "resize",
           "save_image", "standardize", "train_test_split"]
