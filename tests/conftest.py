"""Shared fixtures: synthetic data in the real file format, and the real config, shrunk."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from fmnist.dataset_files import SYSTEM_DIR, find_files
from tests.synthetic import write_dataset

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full-size synthetic Fashion-MNIST (four ``.gz`` IDX files), written once per session."""
    return write_dataset(tmp_path_factory.mktemp("fashion-mnist"))


@pytest.fixture
def synthetic_copy(synthetic_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic files, for tests that damage one."""
    return Path(shutil.copytree(synthetic_dir, tmp_path / "data"))


def fast_overrides(data_dir: Path, output_dir: Path) -> list[str]:
    """Overrides that make a run small and self-contained: synthetic data, CPU, no extras."""
    return [
        f"data.data_dir={data_dir}",
        "data.system_dir=null",
        "data.download=false",
        "data.verify_digest=false",
        "data.batch_size=128",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=8",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "trainer.log_every_n_steps=1",
        "trainer.enable_model_summary=false",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        f"output_dir={output_dir}",
    ]


def compose_config(*overrides: str) -> DictConfig:
    """The real config from ``conf/``, composed as ``train.py`` would with these overrides."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture
def make_cfg(synthetic_dir: Path, tmp_path: Path):
    """Compose the real config, shrunk to a few batches of synthetic data in ``tmp_path``."""

    def make(*overrides: str) -> DictConfig:
        return compose_config(*fast_overrides(synthetic_dir, tmp_path / "run"), *overrides)

    return make


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Fashion-MNIST (Debian's copy, or ./data). Required in CI, skipped elsewhere."""
    for folder in (ROOT / "data", SYSTEM_DIR):
        if find_files(folder):
            return folder
    message = (
        f"real Fashion-MNIST not found (apt-get install dataset-fashion-mnist -> {SYSTEM_DIR})"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
