"""Fashion-MNIST look-alikes in the real IDX ``.gz`` format, for tests.

Each class is a bright shape at its own place on a noisy background, so the
real loading code runs on real file formats and a CNN learns the classes
within a few dozen updates.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from fmnist.dataset_files import IMAGES_MAGIC, LABELS_MAGIC, SPLITS


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An IDX payload: big-endian magic, one big-endian size per dimension, then uint8 data."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, magic: int) -> Path:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``."""
    data = idx_bytes(array, magic)
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def class_templates() -> np.ndarray:
    """One 28x28 template per class: a bright bar or block at a class-specific place."""
    templates = np.zeros((10, 28, 28), dtype=np.uint8)
    for c in range(10):
        row, col = divmod(c, 5)
        if c % 2:
            templates[c, 4 + 12 * row : 12 + 12 * row, 2 + 5 * col : 6 + 5 * col] = 220
        else:
            templates[c, 6 + 12 * row : 10 + 12 * row, 1 + 5 * col : 9 + 5 * col] = 220
    return templates


def make_split(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    noise = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
    images = np.maximum(class_templates()[labels], noise)
    return images, labels


def write_dataset(folder: Path, seed: int = 0, compressed: bool = True) -> Path:
    """Write all four files, full size (60,000 + 10,000 images), into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if compressed else ""
    for spec in SPLITS.values():
        images, labels = make_split(spec.count, rng)
        write_idx(folder / f"{spec.images}{suffix}", images, IMAGES_MAGIC)
        write_idx(folder / f"{spec.labels}{suffix}", labels, LABELS_MAGIC)
    return folder
