"""Optimisers and learning-rate schedules, chosen by name from the config.

Names rather than import paths keep checkpoints loadable without running
arbitrary code, and let a typo be answered with the list of valid choices.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from fmnist.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "onecycle", "step")


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
) -> Optimizer:
    """An optimiser by name; ``momentum``/``nesterov`` apply to SGD, ``betas`` to Adam(W)."""
    if lr <= 0:
        raise ConfigError(f"optimizer.lr={lr} must be positive")
    if weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay={weight_decay} must be zero or positive")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
    raise ConfigError(f"optimizer.name={name!r} is unknown; choose one of {list(OPTIMIZERS)}")


def build_scheduler(
    optimizer: Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    name: str = "none",
    warmup_fraction: float = 0.3,
    min_lr: float = 0.0,
    step_epochs: int = 3,
    gamma: float = 0.1,
) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` dict stepping every optimiser update, or None.

    - ``cosine``: cosine decay from the optimiser's lr to ``min_lr`` over the run;
    - ``onecycle``: warm up to the optimiser's lr for ``warmup_fraction`` of the run, then anneal;
    - ``step``: multiply the lr by ``gamma`` every ``step_epochs`` epochs.
    """
    if name == "none":
        return None
    scheduler: LRScheduler
    if name == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total_steps, eta_min=min_lr
        )
    elif name == "onecycle":
        if not 0.0 < warmup_fraction < 1.0:
            raise ConfigError(f"scheduler.warmup_fraction={warmup_fraction} must be in (0, 1)")
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=total_steps,
            pct_start=warmup_fraction,
        )
    elif name == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=step_epochs * steps_per_epoch, gamma=gamma
        )
    else:
        raise ConfigError(f"scheduler.name={name!r} is unknown; choose one of {list(SCHEDULERS)}")
    return {"scheduler": scheduler, "interval": "step"}
