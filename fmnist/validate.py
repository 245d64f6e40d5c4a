"""Check a composed config before any data is loaded or any file is written.

Every problem is a :class:`~fmnist.errors.ConfigError` whose message names the
key, the bad value and what is allowed. Models, optimisers and schedules are
dry-built here, so their own checks run up front rather than mid-run.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from fmnist.augment import build_augment
from fmnist.dataset_files import SPLITS
from fmnist.errors import ConfigError
from fmnist.models import architecture_of, build_model
from fmnist.optim import build_optimizer, build_scheduler

TRAIN_IMAGES = SPLITS["train"].count
GPU_ACCELERATORS = ("gpu", "cuda")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_int(key: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    allowed = f"an integer >= {minimum}" if maximum is None else f"an integer {minimum}-{maximum}"
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(f"{key}={value!r} is not allowed: use {allowed}")


def check_data(data: DictConfig) -> None:
    _require_int("data.batch_size", data.batch_size, 1)
    _require_int("data.eval_batch_size", data.eval_batch_size, 1)
    _require_int("data.val_size", data.val_size, 0, TRAIN_IMAGES - 1)
    _require_int("data.num_workers", data.num_workers, 0)
    if data.train_subset is not None:
        _require_int("data.train_subset", data.train_subset, 1, TRAIN_IMAGES - data.val_size)
    build_augment(OmegaConf.to_container(data.augment) if data.get("augment") else None)


def check_trainer(trainer: DictConfig) -> None:
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps", -1)
    if not (_is_int(max_steps) and max_steps > 0) and not (_is_int(max_epochs) and max_epochs >= 1):
        raise ConfigError(
            f"trainer.max_epochs={max_epochs!r} is not allowed: use an integer >= 1 "
            "(or set trainer.max_steps to a positive number of updates)"
        )
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    if accelerator in GPU_ACCELERATORS:
        available = torch.cuda.device_count()
        devices = trainer.get("devices", 1)
        wanted = available if devices in ("auto", -1) else devices
        if available == 0 or (_is_int(wanted) and wanted > available):
            raise ConfigError(
                f"trainer.accelerator={accelerator} with trainer.devices={devices} needs "
                f"{wanted if _is_int(wanted) else 'a'} GPU(s), but this machine has {available}: "
                "use trainer.accelerator=cpu (or auto), or fewer trainer.devices"
            )


def check_model_and_optimiser(cfg: DictConfig) -> None:
    """Build the model, optimiser and schedule once, so their checks run now."""
    build_model(**OmegaConf.to_container(cfg.model, resolve=True))
    probe = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = build_optimizer(probe, **OmegaConf.to_container(cfg.optimizer, resolve=True))
    build_scheduler(optimizer, 10, 1, **OmegaConf.to_container(cfg.scheduler, resolve=True))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``), or explain why it is not one."""
    if not path.is_file():
        raise ConfigError(f"ckpt_path={path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"ckpt_path={path} is not a checkpoint (not a PyTorch checkpoint file)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConfigError(
            f"ckpt_path={path} holds objects other than tensors and plain values; it is refused "
            "because loading it could run code from it (checkpoints load with weights_only=True)"
        ) from err
    except Exception as err:
        raise ConfigError(f"ckpt_path={path} cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"ckpt_path={path} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


def check_checkpoint_matches(checkpoint: dict[str, Any], cfg: DictConfig, path: Path) -> None:
    """A checkpoint only resumes the architecture it was trained with."""
    trained = (checkpoint.get("hyper_parameters") or {}).get("model")
    if trained is None:
        raise ConfigError(f"ckpt_path={path} was not written by this project (no model settings)")
    # Runtime options (channels_last, compile) may change between runs; the network may not.
    trained = architecture_of(trained)
    wanted = architecture_of(OmegaConf.to_container(cfg.model, resolve=True))
    if trained != wanted:
        diffs = [
            f"model.{k}={trained.get(k)!r} in the checkpoint, {wanted.get(k)!r} now"
            for k in sorted(set(trained) | set(wanted))
            if trained.get(k) != wanted.get(k)
        ]
        raise ConfigError(
            f"ckpt_path={path} was trained with a different model: {'; '.join(diffs)}. "
            "Resume with the model settings it was trained with."
        )


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_not_ddp_in_sweep(trainer: DictConfig) -> None:
    """DDP re-launches the whole command line in each process: inside -m, the whole sweep."""
    strategy = str(trainer.get("strategy", "auto"))
    if in_multirun() and strategy.startswith("ddp") and "spawn" not in strategy:
        raise ConfigError(
            f"trainer.strategy={strategy} inside a sweep (-m) would re-launch the whole sweep "
            "in every process: run DDP as a single run (python train.py trainer=ddp ...), and "
            "give sweep jobs one device each (launcher=ray puts them on separate GPUs)"
        )


def check_config(cfg: DictConfig) -> dict[str, Any] | None:
    """Check every value a run depends on; returns the checkpoint to resume from, if any."""
    if cfg.seed is not None and not _is_int(cfg.seed):
        raise ConfigError(f"seed={cfg.seed!r} is not allowed: use an integer, or null")
    reuse = cfg.get("reuse_freed_memory", True)
    if not isinstance(reuse, bool):
        raise ConfigError(f"reuse_freed_memory={reuse!r} is not allowed: use true or false")
    check_not_ddp_in_sweep(cfg.trainer)
    check_data(cfg.data)
    check_trainer(cfg.trainer)
    check_model_and_optimiser(cfg)
    if cfg.ckpt_path:
        path = Path(cfg.ckpt_path)
        checkpoint = read_checkpoint(path)
        check_checkpoint_matches(checkpoint, cfg, path)
        return checkpoint
    return None
