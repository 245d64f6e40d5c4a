"""The DataModule: split, batches per epoch, shuffling, normalisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fmnist.data import MEAN, STD, FashionMNISTDataModule, ShuffledBatches, normalize
from fmnist.errors import ConfigError


def datamodule(folder: Path, **kwargs) -> FashionMNISTDataModule:
    dm = FashionMNISTDataModule(
        data_dir=folder, system_dir=None, download=False, verify_digest=False, **kwargs
    )
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def dm(synthetic_dir: Path) -> FashionMNISTDataModule:
    return datamodule(synthetic_dir)


def test_default_split_sizes(dm: FashionMNISTDataModule) -> None:
    assert dm.sizes() == {"train": 55_000, "val": 5_000, "test": 10_000}


def test_validation_is_disjoint_and_fixed(dm: FashionMNISTDataModule, synthetic_dir: Path) -> None:
    again = datamodule(synthetic_dir, shuffle_seed=7)  # split_seed, not shuffle_seed, decides
    assert torch.equal(again.val_set.images, dm.val_set.images)
    train_rows = {row.tobytes() for row in dm.train_set.images[:2000].numpy()}
    val_rows = {row.tobytes() for row in dm.val_set.images.numpy()}
    assert len(train_rows & val_rows) <= 1  # noise images are unique; at most a chance clash


def test_no_validation(synthetic_dir: Path) -> None:
    dm = datamodule(synthetic_dir, val_size=0)
    assert dm.sizes() == {"train": 60_000, "test": 10_000}
    assert not dm.has_validation
    assert dm.val_dataloader() == []


def test_train_subset(synthetic_dir: Path) -> None:
    dm = datamodule(synthetic_dir, train_subset=10_000)
    assert dm.sizes() == {"train": 10_000, "val": 5_000, "test": 10_000}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_size": -1}, "data.val_size=-1"),
        ({"val_size": 60_000}, "data.val_size=60000"),
        ({"train_subset": 0}, "data.train_subset=0"),
        ({"train_subset": 55_001}, "data.train_subset=55001"),
    ],
)
def test_bad_split_sizes(synthetic_dir: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        datamodule(synthetic_dir, **kwargs)


def test_teaching_figures_938_batches_per_epoch(synthetic_dir: Path) -> None:
    dm = datamodule(synthetic_dir, val_size=0, batch_size=64)
    loader = dm.train_dataloader()
    assert len(loader) == 938  # 60,000 / 64, rounded up
    sizes = [len(labels) for _, labels in loader]
    assert len(sizes) == 938
    assert sizes[:-1] == [64] * 937 and sizes[-1] == 60_000 - 937 * 64
    images, labels = next(iter(loader))
    assert images.shape == (64, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64


def _epoch_order(sampler: ShuffledBatches, epoch: int) -> torch.Tensor:
    sampler.set_epoch(epoch)
    return torch.cat(list(sampler))


def test_shuffling_is_new_each_epoch_and_reproducible() -> None:
    sampler = ShuffledBatches(1000, 64, seed=3)
    first, second = _epoch_order(sampler, 0), _epoch_order(sampler, 1)
    assert sorted(first.tolist()) == list(range(1000))  # every image once per epoch
    assert not torch.equal(first, second)
    assert torch.equal(first, _epoch_order(ShuffledBatches(1000, 64, seed=3), 0))
    assert not torch.equal(first, _epoch_order(ShuffledBatches(1000, 64, seed=4), 0))


def test_no_shuffle_keeps_order() -> None:
    order = _epoch_order(ShuffledBatches(100, 32, shuffle=False), 5)
    assert order.tolist() == list(range(100))


def test_drop_last() -> None:
    sampler = ShuffledBatches(100, 32, drop_last=True)
    assert len(sampler) == 3 and all(len(b) == 32 for b in sampler)


def test_ranks_share_an_epoch_without_overlap() -> None:
    ranks = [ShuffledBatches(1001, 50, seed=1, rank=r, world_size=2) for r in range(2)]
    orders = [_epoch_order(s, 2) for s in ranks]
    assert len(ranks[0]) == len(ranks[1]) == 11  # 501 images each: 1001 padded to 1002
    assert len(set(orders[0].tolist()) | set(orders[1].tolist())) == 1001


def test_loader_uses_lightning_epoch(dm: FashionMNISTDataModule) -> None:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)  # what Lightning calls before each epoch
    first = next(iter(loader))[1]
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(loader))[1])


def test_batches_are_normalised_on_transfer(dm: FashionMNISTDataModule) -> None:
    images, labels = next(iter(dm.train_dataloader()))
    out_images, out_labels = dm.on_after_batch_transfer((images, labels), 0)
    assert out_images.dtype == torch.float32
    assert torch.allclose(out_images, (images.float() / 255 - MEAN) / STD)
    assert out_labels is labels
    already_float = torch.zeros(1, 1, 28, 28)
    assert dm.on_after_batch_transfer(already_float, 0) is already_float


@pytest.mark.real_data
def test_normalisation_constants_match_real_data(real_data_dir: Path) -> None:
    dm = datamodule(real_data_dir, val_size=0)
    pixels = normalize(dm.train_set.images)
    assert abs(float(pixels.mean())) < 0.01
    assert abs(float(pixels.std()) - 1.0) < 0.01
