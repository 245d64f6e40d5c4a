"""Finding, downloading and verifying the IDX files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from fmnist import dataset_files
from fmnist.dataset_files import (
    FILE_NAMES,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    LocatedDataset,
    find_files,
    load_split,
    locate,
)
from fmnist.errors import CorruptDatasetError, DatasetNotFoundError
from tests.synthetic import idx_bytes, write_dataset, write_idx


def located(folder: Path, source: str = "data_dir") -> LocatedDataset:
    files = find_files(folder)
    assert files is not None
    return LocatedDataset(files, source)


# -- lookup order ------------------------------------------------------------------


def test_find_files_flat_and_torchvision_layout(synthetic_dir: Path, tmp_path: Path) -> None:
    assert set(find_files(synthetic_dir)) == set(FILE_NAMES)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in synthetic_dir.iterdir():
        (raw / f.name).symlink_to(f)
    assert find_files(tmp_path)["t10k-images-idx3-ubyte"].parent == raw


def test_find_files_needs_all_four(synthetic_copy: Path) -> None:
    (synthetic_copy / "t10k-labels-idx1-ubyte.gz").unlink()
    assert find_files(synthetic_copy) is None


def test_find_files_prefers_uncompressed(synthetic_copy: Path) -> None:
    gz = synthetic_copy / "train-labels-idx1-ubyte.gz"
    plain = synthetic_copy / "train-labels-idx1-ubyte"
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    assert find_files(synthetic_copy)["train-labels-idx1-ubyte"] == plain


def test_data_dir_comes_before_system_copy(synthetic_dir: Path, tmp_path: Path) -> None:
    other = write_dataset(tmp_path / "system", seed=1)
    found = locate(synthetic_dir, system_dir=other, allow_download=False)
    assert found.source == "data_dir"
    assert found.files["train-images-idx3-ubyte"].parent == synthetic_dir


def test_system_copy_used_when_data_dir_is_empty(synthetic_dir: Path, tmp_path: Path) -> None:
    found = locate(tmp_path / "empty", system_dir=synthetic_dir, allow_download=False)
    assert found.source == "system"
    assert "apt-get install --reinstall dataset-fashion-mnist" in found.fix_hint


def test_download_is_the_last_resort(
    synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_download(root: Path) -> None:
        calls.append(root)
        write_dataset(root / "FashionMNIST" / "raw")

    monkeypatch.setattr(dataset_files, "download", fake_download)
    locate(synthetic_dir, system_dir=None)
    assert calls == []  # found locally: no download
    found = locate(tmp_path / "data", system_dir=tmp_path / "nowhere")
    assert calls == [tmp_path / "data"]
    assert found.source == "download"


def test_not_found_names_every_way_to_get_the_data(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        locate(tmp_path / "data", system_dir=tmp_path / "sys", allow_download=False)
    message = str(err.value)
    assert str(tmp_path / "data") in message
    assert str(tmp_path / "sys") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "data.download=true" in message
    assert "downloading is off" in message


def test_failed_download_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(root: Path) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(dataset_files, "download", offline)
    with pytest.raises(DatasetNotFoundError, match="download failed.*Network is unreachable"):
        locate(tmp_path / "data", system_dir=None)


# -- verification ----------------------------------------------------------------


def test_load_split_shapes_and_types(synthetic_dir: Path) -> None:
    images, labels = load_split(located(synthetic_dir), "test", verify_digest=False)
    assert images.shape == (10_000, 1, 28, 28)
    assert images.dtype == torch.uint8
    assert labels.shape == (10_000,)
    assert int(labels.min()) >= 0 and int(labels.max()) <= 9


def test_uncompressed_files_load_too(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "plain", compressed=False)
    images, _ = load_split(located(folder), "test", verify_digest=False)
    assert images.shape == (10_000, 1, 28, 28)


def _damage(folder: Path, name: str, data: bytes) -> Path:
    path = folder / f"{name}.gz"
    path.write_bytes(gzip.compress(data, compresslevel=1))
    return path


def test_truncated_gzip_is_named(synthetic_copy: Path) -> None:
    path = synthetic_copy / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptDatasetError, match=str(path)):
        load_split(located(synthetic_copy), "test", verify_digest=False)


def test_truncated_payload_is_named(synthetic_copy: Path) -> None:
    path = synthetic_copy / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    _damage(synthetic_copy, "t10k-images-idx3-ubyte", raw[:-100])
    with pytest.raises(CorruptDatasetError, match="truncated") as err:
        load_split(located(synthetic_copy), "test", verify_digest=False)
    assert str(path) in str(err.value)
    assert "delete the file" in str(err.value)


def test_wrong_magic_number_is_named(synthetic_copy: Path) -> None:
    # A labels file where the images should be.
    labels = np.zeros(10_000, dtype=np.uint8)
    path = _damage(synthetic_copy, "t10k-images-idx3-ubyte", idx_bytes(labels, LABELS_MAGIC))
    with pytest.raises(CorruptDatasetError, match="magic number is 0x00000801") as err:
        load_split(located(synthetic_copy), "test", verify_digest=False)
    assert str(path) in str(err.value)


def test_wrong_item_count_is_named(synthetic_copy: Path) -> None:
    # The test labels where the training labels should be: valid IDX, wrong count.
    labels = np.zeros(10_000, dtype=np.uint8)
    path = write_idx(synthetic_copy / "train-labels-idx1-ubyte.gz", labels, LABELS_MAGIC)
    with pytest.raises(CorruptDatasetError, match=r"shape \(10000,\), expected \(60000,\)") as err:
        load_split(located(synthetic_copy), "train", verify_digest=False)
    assert str(path) in str(err.value)


def test_wrong_image_size_is_named(synthetic_copy: Path) -> None:
    images = np.zeros((10_000, 32, 32), dtype=np.uint8)
    write_idx(synthetic_copy / "t10k-images-idx3-ubyte.gz", images, IMAGES_MAGIC)
    with pytest.raises(CorruptDatasetError, match=r"expected \(10000, 28, 28\)"):
        load_split(located(synthetic_copy), "test", verify_digest=False)


def test_label_out_of_range_is_named(synthetic_copy: Path) -> None:
    labels = np.full(10_000, 3, dtype=np.uint8)
    labels[17] = 12
    path = write_idx(synthetic_copy / "t10k-labels-idx1-ubyte.gz", labels, LABELS_MAGIC)
    with pytest.raises(CorruptDatasetError, match="label 12 is outside 0-9") as err:
        load_split(located(synthetic_copy), "test", verify_digest=False)
    assert str(path) in str(err.value)


def test_digest_mismatch_is_named(synthetic_dir: Path) -> None:
    with pytest.raises(CorruptDatasetError, match="SHA-256") as err:
        load_split(located(synthetic_dir), "test", verify_digest=True)
    assert "t10k-images-idx3-ubyte" in str(err.value)
    assert "data.verify_digest=false" in str(err.value)


@pytest.mark.real_data
def test_real_files_pass_every_check(real_data_dir: Path) -> None:
    found = locate(real_data_dir, system_dir=None, allow_download=False)
    for split, count in (("train", 60_000), ("test", 10_000)):
        images, labels = load_split(found, split, verify_digest=True)
        assert images.shape == (count, 1, 28, 28)
        assert labels.bincount().tolist() == [count // 10] * 10  # balanced classes
