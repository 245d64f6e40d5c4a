"""Whole runs on synthetic data: what a run writes, plans and reports."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from fmnist import CLASS_NAMES
from fmnist.train import run
from tests.conftest import ROOT, fast_overrides


def read_metrics(output_dir: Path) -> dict:
    return json.loads((output_dir / "metrics.json").read_text())


def test_run_writes_checkpoints_events_and_metrics(make_cfg) -> None:
    cfg = make_cfg()
    returned = run(cfg)
    out = Path(cfg.output_dir)

    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    metrics = read_metrics(out)
    assert returned == pytest.approx(metrics["val/acc_best"])
    assert metrics["tested_checkpoint"].endswith("best.ckpt")
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["test/loss"] > 0
    assert list(metrics["test/acc_per_class"]) == list(CLASS_NAMES)
    assert metrics["plan"]["batches_per_epoch"] == 8
    assert metrics["global_step"] == metrics["plan"]["total_updates"] == 8
    assert metrics["seed"] == 42 and "torch" in metrics["versions"]

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/acc",
        "train/lr",
        "val/loss",
        "val/acc",
        "val/acc_best",
        "test/loss",
        "test/acc",
        "test/acc_class/T-shirt_top",
    ):
        assert tag in scalars, tag
    hparams = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    logged = session.session_start_info.hparams
    assert logged["model.channels"].string_value == "[32, 64]"
    assert logged["data.batch_size"].number_value == 128
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"val/acc_best", "test/acc"} <= metric_tags


def test_without_validation_every_planned_update_happens(make_cfg) -> None:
    cfg = make_cfg(
        "model=mlp",
        "data.val_size=0",
        "data.batch_size=2048",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=null",
    )
    run(cfg)
    out = Path(cfg.output_dir)
    metrics = read_metrics(out)
    batches = math.ceil(60_000 / 2048)
    assert metrics["plan"]["train_images"] == 60_000 and metrics["plan"]["val_images"] == 0
    assert metrics["plan"]["batches_per_epoch"] == batches
    assert metrics["global_step"] == metrics["plan"]["total_updates"] == 2 * batches
    assert metrics["tested_checkpoint"].endswith("last.ckpt")
    assert not (out / "checkpoints" / "best.ckpt").exists()
    assert "val/acc" not in metrics


def test_seed_zero_is_a_seed(make_cfg, tmp_path: Path) -> None:
    def train_loss(seed: int, name: str) -> float:
        cfg = make_cfg(
            "model=mlp",
            f"seed={seed}",
            "trainer.deterministic=true",
            "logger=none",
            "test=false",
            f"output_dir={tmp_path / name}",
        )
        run(cfg)
        return read_metrics(tmp_path / name)["train/loss_epoch"]

    first, again, other = train_loss(0, "a"), train_loss(0, "b"), train_loss(1, "c")
    assert first == again
    assert first != other


def test_resume_from_last_checkpoint(make_cfg, tmp_path: Path) -> None:
    first = make_cfg("model=mlp", "logger=none", "test=false", f"output_dir={tmp_path / 'first'}")
    run(first)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = make_cfg(
        "model=mlp",
        "logger=none",
        "trainer.max_epochs=2",
        f"ckpt_path={last}",
        f"output_dir={tmp_path / 'resumed'}",
    )
    run(resumed)
    metrics = read_metrics(tmp_path / "resumed")
    assert metrics["global_step"] == 16  # 8 updates before, 8 after
    assert metrics["epochs"] == 2


def train_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_train_py_end_to_end(synthetic_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = [o for o in fast_overrides(synthetic_dir, out) if not o.startswith("output_dir=")]
    result = train_py(*overrides, f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stdout + result.stderr
    for path in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "train.log",
        "metrics.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (out / path).is_file(), path
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    log = (out / "train.log").read_text()
    for text in (
        "Run plan",
        "batches per epoch",
        "optimizer updates",
        "Test results",
        "T-shirt/top",
    ):
        assert text in log, text
    assert log.count("Run plan") == 1  # Lightning's lines are not doubled either
    assert log.count("`Trainer.fit` stopped") == 1
    assert "Run plan" in result.stdout


def test_missing_data_stops_with_instructions(tmp_path: Path) -> None:
    result = train_py(
        f"data.data_dir={tmp_path / 'nothing'}",
        f"data.system_dir={tmp_path / 'no-system'}",
        "data.download=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "apt-get install dataset-fashion-mnist" in output
    assert str(tmp_path / "nothing") in output
    assert "Traceback" not in output


def test_bad_config_value_stops_with_a_clear_message(synthetic_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = [o for o in fast_overrides(synthetic_dir, out) if not o.startswith("output_dir=")]
    result = train_py(*overrides, "model.kernel_size=4", f"hydra.run.dir={out}")
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "model.kernel_size=4 is not allowed" in output
    assert "Traceback" not in output
