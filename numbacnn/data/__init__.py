"""Datasets (built-in shapes, IDX, CIFAR-10, npz, image folders and lists, packed files), image files
through Pillow, the streaming input pipeline and augmentation."""
from .augment import make_augment
from .builtin import CLASS_NAMES as BUILTIN_CLASS_NAMES, make_shapes
from .datasets import ArrayDataset, Dataset, FileDataset, Subset
from .images import Preprocessing, decode, load_image, load_images, read_image, resize, save_image
from .loaders import (DataError, Splits, channel_stats, load_dataset, load_splits, read_idx,
                      standardize, train_test_split)
from .packed import PackedDataset, pack
from .sources import ImageOptions

__all__ = ["BUILTIN_CLASS_NAMES", "DataError", "Splits", "channel_stats", "load_dataset", "load_image",
           "load_images", "load_splits", "make_augment", "make_shapes", "read_idx", "read_image", "resize",
           "save_image", "standardize", "train_test_split", "Dataset", "ArrayDataset", "FileDataset", "Subset",
           "PackedDataset", "pack", "Preprocessing", "decode", "ImageOptions"]
