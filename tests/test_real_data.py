"""Integration: the real Fashion-MNIST, end to end (runs in CI, which installs the data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmnist.train import run
from tests.conftest import compose_config


@pytest.mark.slow
@pytest.mark.real_data
def test_one_epoch_on_10000_real_images_reaches_80_percent(
    real_data_dir: Path, tmp_path: Path
) -> None:
    cfg = compose_config(
        f"data.data_dir={real_data_dir}",
        "data.system_dir=null",
        "data.download=false",
        "data.train_subset=10000",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        "logger=none",
        f"output_dir={tmp_path}",
    )
    best_val_acc = run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["plan"]["train_images"] == 10_000
    assert metrics["plan"]["val_images"] == 5_000
    assert metrics["global_step"] == 157  # 10,000 / 64, rounded up
    assert best_val_acc >= 0.80
    assert metrics["test/acc"] >= 0.78  # all 10,000 real test images
