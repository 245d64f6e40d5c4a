"""Find, download and verify the four original Fashion-MNIST IDX files.

Lookup order (offline first):

1. ``data_dir`` (flat, or torchvision's ``FashionMNIST/raw`` layout), plain or ``.gz``;
2. the system copy that Debian's ``dataset-fashion-mnist`` installs;
3. a download through torchvision into ``data_dir``.

Each file is checked before use (IDX magic number, item count, 28x28 shape,
labels 0-9 and, by default, the SHA-256 of its decompressed content), and a
bad file is named in the error. Nothing here ever deletes or overwrites a
file the user already has.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fmnist.errors import CorruptDatasetError, DatasetNotFoundError

log = logging.getLogger(__name__)

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
IMAGE_SIZE = 28
NUM_CLASSES = 10

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


@dataclass(frozen=True)
class SplitFiles:
    """The two files of one split and how many items each must hold."""

    images: str
    labels: str
    count: int


SPLITS: dict[str, SplitFiles] = {
    "train": SplitFiles("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": SplitFiles("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
FILE_NAMES: tuple[str, ...] = tuple(n for s in SPLITS.values() for n in (s.images, s.labels))

# SHA-256 of each file's decompressed content, from the original release
# (identical in Debian's package and in torchvision's download).
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


@dataclass(frozen=True)
class LocatedDataset:
    """Where the four files were found, and which lookup step found them."""

    files: dict[str, Path]
    source: str  # "data_dir", "system" or "download"

    @property
    def fix_hint(self) -> str:
        """How to repair a bad file from this source (never done for the user)."""
        if self.source == "system":
            return f"reinstall the package: sudo apt-get install --reinstall {DEBIAN_PACKAGE}"
        return "delete the file and run again to download it, or copy a good one in its place"


def find_files(directory: Path) -> dict[str, Path] | None:
    """The paths of all four files in ``directory``, or None if any is missing.

    Looks in the directory itself and in torchvision's ``FashionMNIST/raw``
    layout; an uncompressed file is preferred over its ``.gz`` (faster to read).
    """
    for folder in (directory, directory / "FashionMNIST" / "raw"):
        found: dict[str, Path] = {}
        for name in FILE_NAMES:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    found[name] = candidate
                    break
        if len(found) == len(FILE_NAMES):
            return found
    return None


def torchvision_fetch(folder: Path) -> None:
    """Download the four files into ``folder/FashionMNIST/raw``; torchvision checks their MD5s."""
    from torchvision.datasets import FashionMNIST

    FashionMNIST(str(folder), train=False, download=True)


def download(root: Path, fetch: Callable[[Path], None] = torchvision_fetch) -> None:
    """Download into a scratch folder, then move the complete files into ``root/FashionMNIST/raw``.

    An interrupted download leaves only the scratch folder (cleared on the next
    try), never a partial file where the lookup would find it.
    """
    scratch = root / ".download"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    fetch(scratch)
    fetched = find_files(scratch)
    if fetched is None:
        raise OSError(f"the download into {scratch} did not produce all four files")
    target = root / "FashionMNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for path in fetched.values():
        os.replace(path, target / path.name)
    shutil.rmtree(scratch, ignore_errors=True)


def locate(
    data_dir: Path, system_dir: Path | None = SYSTEM_DIR, allow_download: bool = True
) -> LocatedDataset:
    """Find the dataset, downloading it into ``data_dir`` as a last resort.

    Raises :class:`DatasetNotFoundError` naming every way to get the data.
    """
    data_dir = Path(data_dir)
    if files := find_files(data_dir):
        return LocatedDataset(files, "data_dir")
    if system_dir is not None and (files := find_files(Path(system_dir))):
        return LocatedDataset(files, "system")

    if allow_download:
        log.info("Fashion-MNIST not found locally; downloading into %s", data_dir)
        try:
            download(data_dir)
        except Exception as err:  # network errors come in many types
            download_note = f"the download failed ({type(err).__name__}: {err})"
        else:
            if files := find_files(data_dir):
                return LocatedDataset(files, "download")
            download_note = "the download finished but left no complete set of files"
    else:
        download_note = "downloading is off (data.download=false)"
    raise DatasetNotFoundError(not_found_message(data_dir, system_dir, download_note))


def not_found_message(data_dir: Path, system_dir: Path | None, download_note: str) -> str:
    """The one message a user sees when the data is nowhere: three ways to get it."""
    looked = [f"  - {data_dir} (data.data_dir)"]
    if system_dir is not None:
        looked.append(f"  - {system_dir} (system copy, data.system_dir)")
    names = ", ".join(f"{n}.gz" for n in FILE_NAMES)
    return "\n".join(
        [
            "Fashion-MNIST was not found. Looked in:",
            *looked,
            f"and {download_note}.",
            "Get the data in one of three ways:",
            f"  1. Install the system copy: sudo apt-get install {DEBIAN_PACKAGE}",
            f"     (Debian/Ubuntu; it puts the files in {SYSTEM_DIR})",
            "  2. Run once on a machine with internet access, with data.download=true",
            f"     (the default): the files are downloaded into {data_dir}",
            f"  3. Copy the four files ({names}) into {data_dir},",
            "     or point data.data_dir=/path/to/folder at a folder that holds them",
        ]
    )


def read_bytes(path: Path, hint: str) -> bytes:
    """The decompressed content of an IDX file (``.gz`` or plain)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise CorruptDatasetError(f"Cannot read {path}: {err}. To fix it, {hint}.") from err


def parse_idx(
    raw: bytes, path: Path, magic: int, shape: tuple[int, ...], hint: str
) -> torch.Tensor:
    """Check an IDX payload's header against ``magic`` and ``shape`` and return it as uint8."""

    def fail(problem: str) -> CorruptDatasetError:
        return CorruptDatasetError(
            f"{path} is not a valid Fashion-MNIST file: {problem}. To fix it, {hint}."
        )

    header_size = 4 + 4 * len(shape)
    if len(raw) < header_size:
        raise fail(f"only {len(raw)} bytes, shorter than the IDX header")
    found_magic = int.from_bytes(raw[:4], "big")
    if found_magic != magic:
        raise fail(f"magic number is {found_magic:#010x}, expected {magic:#010x}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(len(shape)))
    if dims != shape:
        raise fail(f"header says shape {dims}, expected {shape}")
    expected_size = header_size + int(torch.tensor(shape).prod())
    if len(raw) != expected_size:
        state = "truncated" if len(raw) < expected_size else "has trailing bytes"
        raise fail(f"{state}: {len(raw)} bytes, expected {expected_size}")
    return torch.frombuffer(bytearray(raw[header_size:]), dtype=torch.uint8).reshape(shape)


def load_split(
    located: LocatedDataset, split: str, verify_digest: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split as ``(images uint8 [N, 1, 28, 28], labels int64 [N])``, verified."""
    spec = SPLITS[split]
    hint = located.fix_hint
    checks = (
        (spec.images, IMAGES_MAGIC, (spec.count, IMAGE_SIZE, IMAGE_SIZE)),
        (spec.labels, LABELS_MAGIC, (spec.count,)),
    )
    tensors = []
    for name, magic, shape in checks:
        path = located.files[name]
        raw = read_bytes(path, hint)
        tensors.append(parse_idx(raw, path, magic, shape, hint))
        if verify_digest and hashlib.sha256(raw).hexdigest() != SHA256[name]:
            raise CorruptDatasetError(
                f"{path} has the right format but not the original content "
                f"(SHA-256 differs from the Fashion-MNIST release). To fix it, {hint}; "
                "or set data.verify_digest=false to use a modified copy on purpose."
            )
    images, labels = tensors
    if int(labels.max()) >= NUM_CLASSES:
        path = located.files[spec.labels]
        raise CorruptDatasetError(
            f"{path} is not a valid Fashion-MNIST file: label {int(labels.max())} "
            f"is outside 0-{NUM_CLASSES - 1}. To fix it, {hint}."
        )
    return images.unsqueeze(1), labels.long()
