"""Every option of every config group composes, and builds what it describes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from fmnist.data import FashionMNISTDataModule
from fmnist.module import LitClassifier
from fmnist.train import build_callbacks, build_loggers, hparams_of
from tests.conftest import CONF_DIR, ROOT

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF_DIR / g).glob("*.yaml"))]


def test_every_group_has_options() -> None:
    assert set(GROUPS) == {
        "callbacks",
        "data",
        "debug",
        "experiment",
        "hparams_search",
        "launcher",
        "logger",
        "model",
        "optimizer",
        "scheduler",
        "sweep",
        "trainer",
    }
    assert ("model", "mlp") in OPTIONS and ("experiment", "teaching") in OPTIONS


def build_everything(cfg: DictConfig) -> None:
    assert isinstance(instantiate(cfg.data), FashionMNISTDataModule)
    module = LitClassifier(
        model=OmegaConf.to_container(cfg.model),
        optimizer=OmegaConf.to_container(cfg.optimizer),
        scheduler=OmegaConf.to_container(cfg.scheduler),
    )
    assert module(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, has_validation=cfg.data.val_size > 0)
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        with pytest.raises(MisconfigurationException, match="not available|GPU"):
            instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
        return
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    assert isinstance(hparams_of(cfg)["model.name"], str)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(make_cfg, group: str, option: str) -> None:
    cfg = make_cfg(f"{group}={option}")
    assert cfg.model.name in ("cnn", "mlp")
    build_everything(cfg)


def test_defaults_are_the_teaching_setup(make_cfg) -> None:
    cfg = make_cfg()
    assert cfg.model == {
        "name": "cnn",
        "channels": [32, 64],
        "kernel_size": 3,
        "hidden": 128,
        "dropout": 0.0,
        "batch_norm": False,
        "pool_first": False,
        "channels_last": False,
        "compile": False,
    }
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 0.001
    assert cfg.seed == 42 and cfg.test is True and cfg.ckpt_path is None


def test_experiment_teaching_pins_the_teaching(make_cfg) -> None:
    cfg = make_cfg("experiment=teaching", "data.batch_size=64", "trainer.max_epochs=10")
    assert cfg.data.val_size == 0 and cfg.data.batch_size == 64
    assert cfg.trainer.max_epochs == 10
    assert list(cfg.model.channels) == [32, 64] and cfg.model.kernel_size == 3


def test_command_line_overrides_reach_the_objects(make_cfg) -> None:
    cfg = make_cfg(
        "data.batch_size=32",
        "model.channels=[16,32,64]",
        "model.kernel_size=5",
        "optimizer.lr=3e-4",
        "trainer.max_epochs=3",
    )
    assert instantiate(cfg.data).batch_size == 32
    module = LitClassifier(
        model=OmegaConf.to_container(cfg.model), optimizer=OmegaConf.to_container(cfg.optimizer)
    )
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64] and convs[0].kernel_size == (5, 5)
    assert module.hparams.optimizer["lr"] == pytest.approx(3e-4)


def test_help_lists_the_groups() -> None:
    out = subprocess.run(
        [sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for group in GROUPS:
        assert f"{group}:" in out, group
    assert "cnn, mlp" in out
    assert "fmnist" in out
