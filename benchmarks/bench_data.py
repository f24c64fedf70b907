"""The input pipeline: JPEG files decoded + resized + augmented per second, beside torchvision, and packed.

A folder of JPEGs (generated with Pillow in a temporary directory: smooth colour fields with a few
discs and sensor-like noise, ``--size`` pixels square, 10 class folders) is read as training batches
of ``--batch-size`` in a shuffled order, every image decoded, resized to ``--image-size`` (shorter
side, then the centre crop) and augmented (flip, zoom, contrast):

* numbacnn from the folder, with 1 and 2 worker threads (``data.pipeline``);
* torchvision's ImageFolder + DataLoader (1 and 2 worker processes) doing the same work (Resize,
  CenterCrop, RandomHorizontalFlip, RandomResizedCrop, ColorJitter(contrast), ToTensor), when
  torchvision is installed (a column of "not installed" otherwise);
* numbacnn from the same images packed once into an HDF5 file (``numbacnn pack``; the packing rate is
  printed too), 1 and 2 workers.

Then one training epoch of a model (LeNet-5 on 3x32x32, AlexNet-32) on the same images from memory
(decoded up front), from the folder (a first epoch, decoding every image, and a later one, where the
decoded images are kept: NUMBACNN_IMAGE_CACHE_MIB) and from the packed file, with the same
augmentation: the time the kernels wait for data is the difference.

    python benchmarks/bench_data.py [--count 5000] [--size 256] [--image-size 64] [--quick]

``--quick``: 600 images, a shorter training epoch.  Every figure is the best of two passes (epochs
alternate between the sources).  Like every benchmark here it prints and never fails on time; the
machine's load average is printed with the figures.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from common import format_table  # noqa: E402

AUGMENT = "flip,zoom,contrast"
REPEATS = 2          # every figure is the best of this many passes (the machine may be shared)


def make_jpegs(root, count, size, classes=10, seed=0):
    """``count`` JPEGs of ``size`` x ``size`` in ``classes`` class folders under ``root``."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        d = os.path.join(root, f"class{i % classes:02d}")
        os.makedirs(d, exist_ok=True)
        a, b = rng.uniform(0.5, 2.0, 2)
        field = np.stack([np.sin(2 * np.pi * (a * xx + b * yy) + k) for k in range(3)], -1)
        img = (field * 100 + 120 + rng.normal(0, 10, field.shape)).clip(0, 255).astype(np.uint8)
        im = Image.fromarray(img)
        draw = ImageDraw.Draw(im)
        for _ in range(3):
            x, y, r = (int(v) for v in rng.integers(0, size, 3))
            r = r % (size // 4) + size // 25
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        im.save(os.path.join(d, f"{i:06d}.jpg"), quality=90)


def batches_of(n, batch_size, seed=0):
    order = np.random.default_rng(seed).permutation(n)
    return [order[s:s + batch_size] for s in range(0, n, batch_size)]


def numbacnn_rate(ds, batch_size, workers, augment=AUGMENT):
    """Images/s of one shuffled pass over ``ds`` (a Dataset): read, decode, augment, in batches."""
    from numbacnn.data import make_augment
    from numbacnn.data.pipeline import BatchStream, augment_batch
    aug = make_augment(augment)
    batches = batches_of(len(ds), batch_size)

    def make(j):
        x, y = ds.batch(batches[j])
        return augment_batch(aug, x, j) if augment else x, y

    with BatchStream(make, 2, 0) as warm:             # Numba's compiled augmentation loaded
        list(warm)
    best = 0.0
    for _ in range(REPEATS):                          # the best pass: the least disturbed by other processes
        t0, seen = time.perf_counter(), 0
        with BatchStream(make, len(batches), workers) as stream:
            for x, _ in stream:
                seen += len(x)
        best = max(best, seen / (time.perf_counter() - t0))
    return best


def torchvision_rate(root, image_size, batch_size, workers):
    """Images/s of torchvision's ImageFolder + DataLoader doing the same work, or None without torchvision."""
    if importlib.util.find_spec("torchvision") is None:
        return None
    import torch
    from torchvision import datasets, transforms
    t = transforms.Compose([transforms.Resize(image_size), transforms.CenterCrop(image_size),
                            transforms.RandomHorizontalFlip(), transforms.RandomResizedCrop(
                                image_size, scale=(0.64, 1.0), ratio=(1.0, 1.0), antialias=True),
                            transforms.ColorJitter(contrast=0.3), transforms.ToTensor()])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(root, t), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, persistent_workers=False)
    best = 0.0
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        seen = sum(len(x) for x, _ in loader)
        best = max(best, seen / (time.perf_counter() - t0))
    return best


def pipeline_table(root, packed, args):
    from numbacnn.data import PackedDataset, Preprocessing
    from numbacnn.data.datasets import FileDataset
    from numbacnn.data.folders import scan_folder
    coll = scan_folder(root)
    prep = Preprocessing(args.image_size, args.image_size)
    files = FileDataset(coll.root, coll.paths, coll.labels, prep, cache=False)    # every pass decodes
    rows, rates = [], {}
    for workers in args.workers:
        rates[("folder", workers)] = numbacnn_rate(files, args.batch_size, workers)
        rates[("torchvision", workers)] = torchvision_rate(root, args.image_size, args.batch_size, workers)
        rates[("packed", workers)] = numbacnn_rate(PackedDataset(packed), args.batch_size, workers)
    rates[("folder, no augmentation", 1)] = numbacnn_rate(files, args.batch_size, 1, "")
    rates[("packed, no augmentation", 1)] = numbacnn_rate(PackedDataset(packed), args.batch_size, 1, "")
    for name, key, what in (("numbacnn, JPEG folder", "folder", "thread"),
                            ("torchvision ImageFolder + DataLoader", "torchvision", "process"),
                            ("numbacnn, packed HDF5", "packed", "thread"),
                            ("numbacnn, JPEG folder, no augmentation", "folder, no augmentation", "thread"),
                            ("numbacnn, packed HDF5, no augmentation", "packed, no augmentation", "thread")):
        for workers in args.workers:
            if (key, workers) not in rates:
                continue
            r, base = rates[(key, workers)], rates[("folder", workers)]
            plural = what + ("es" if what.endswith("s") else "s") if workers != 1 else what
            rows.append((f"{name} ({workers} {plural})", "not installed" if r is None else f"{r:,.0f}",
                         "" if r is None else f"{r / base:.2f}x"))
    print(format_table(["input pipeline: decode + resize + augment", "images/s", "vs JPEG folder"], rows))
    return rates


def epoch_table(root, packed, args):
    """One training epoch per model on the same images from memory, the folder and the packed file."""
    from numbacnn.data import PackedDataset, Preprocessing, make_augment
    from numbacnn.data.datasets import ArrayDataset, FileDataset
    from numbacnn.data.folders import scan_folder
    from numbacnn.models import build_model
    from numbacnn.train import Trainer
    coll = scan_folder(root)
    rows = []
    for model_name, n in (("lenet5", args.train_images), ("alexnet32", args.alexnet_images)):
        prep = Preprocessing(32, 32)
        files = FileDataset(coll.root, coll.paths, coll.labels, prep, workers=max(args.workers), cache=False)
        arrays = ArrayDataset(*files[np.arange(n)].batch(np.arange(n)))
        pk = PackedDataset(packed, workers=1)[np.arange(n)]
        times = {}
        model = build_model(model_name, input_shape=(3, 32, 32), num_classes=10).build("cpu", seed=0)
        warm = arrays[np.arange(min(n, 128))]                # compiles (or loads) the kernels: not timed
        Trainer(model, batch_size=64, augment=make_augment(AUGMENT), seed=0).fit(warm, None, 1)
        cached = FileDataset(coll.root, coll.paths, coll.labels, prep, workers=max(args.workers))[np.arange(n)]
        cached.batch(np.arange(n))                           # its first epoch: every image decoded and kept
        for _ in range(REPEATS):                             # alternating, the best epoch of each
            first = FileDataset(coll.root, coll.paths, coll.labels, prep, workers=max(args.workers),
                                cache=False)[np.arange(n)]  # every image decoded (a first epoch)
            for label, data in (("memory", arrays), ("JPEG folder, first epoch (decoding)", first),
                                ("JPEG folder, later epochs (decoded images kept)", cached), ("packed", pk)):
                trainer = Trainer(model, batch_size=64, augment=make_augment(AUGMENT), seed=1)
                t0 = time.perf_counter()
                trainer.fit(data, None, 1)
                times[label] = min(times.get(label, np.inf), time.perf_counter() - t0)
        for label, t in times.items():
            rows.append((f"{model_name}, {label}", f"{n:,}", f"{t:.2f}", f"{n / t:,.0f}",
                         f"{t / times['memory']:.2f}x"))
    print(format_table(["one training epoch (batch 64, augmented)", "images", "s", "images/s", "time vs memory"],
                       rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=5000, help="JPEG files to generate")
    ap.add_argument("--size", type=int, default=256, help="their side in pixels")
    ap.add_argument("--image-size", type=int, default=64, help="the crop the pipeline makes")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", default="1,2", help="worker counts to time")
    ap.add_argument("--train-images", type=int, default=None, help="images in the LeNet-5 epoch (default: all)")
    ap.add_argument("--alexnet-images", type=int, default=1024, help="images in the AlexNet-32 epoch")
    ap.add_argument("--no-train", action="store_true", help="skip the training epochs")
    ap.add_argument("--quick", action="store_true", help="600 images, 256-image AlexNet epoch")
    args = ap.parse_args()
    if args.quick:
        args.count, args.alexnet_images = min(args.count, 600), min(args.alexnet_images, 256)
    args.workers = [int(w) for w in args.workers.split(",")]
    args.train_images = min(args.train_images or args.count, args.count)
    args.alexnet_images = min(args.alexnet_images, args.count)
    tmp = tempfile.mkdtemp(prefix="bench_data_")
    try:
        root, packed = os.path.join(tmp, "photos"), os.path.join(tmp, "photos.h5")
        t0 = time.perf_counter()
        make_jpegs(root, args.count, args.size)
        mb = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs) / 2 ** 20
        print(f"{args.count:,} JPEGs of {args.size}x{args.size} ({mb:.1f} MiB) written in "
              f"{time.perf_counter() - t0:.1f}s; crop {args.image_size}x{args.image_size}, batch {args.batch_size}, "
              f"augmentation {AUGMENT}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        from numbacnn.data import Preprocessing, pack
        from numbacnn.data.folders import scan_folder
        done = pack(scan_folder(root), packed, Preprocessing(args.image_size, args.image_size), workers=2,
                    log=lambda m: None)
        print(f"numbacnn pack: {done['images'] / done['seconds']:,.0f} images/s (2 threads), "
              f"{os.path.getsize(packed) / 2 ** 20:.1f} MiB\n")
        pipeline_table(root, packed, args)
        if not args.no_train:
            print()
            packed32 = os.path.join(tmp, "photos32.h5")
            pack(scan_folder(root), packed32, Preprocessing(32, 32), workers=2, log=lambda m: None)
            epoch_table(root, packed32, args)
        print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
