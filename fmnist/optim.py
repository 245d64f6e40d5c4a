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
LR_SCALING = ("none", "linear", "sqrt")


def scaled_lr(lr: float, batch_size: int, reference_batch_size: int, rule: str) -> float:
    """The learning rate for ``batch_size``, given one tuned at ``reference_batch_size``.

    ``linear`` (Goyal et al., for SGD) keeps the update per image constant;
    ``sqrt`` keeps the noise of the update constant, the usual rule for Adam.

    >>> scaled_lr(1e-3, 256, 64, "linear"), scaled_lr(1e-3, 256, 64, "sqrt")
    (0.004, 0.002)
    """
    if rule not in LR_SCALING:
        raise ConfigError(f"optimizer.lr_scaling={rule!r} is unknown; choose one of {LR_SCALING}")
    if reference_batch_size < 1:
        raise ConfigError(f"optimizer.reference_batch_size={reference_batch_size} must be >= 1")
    ratio = batch_size / reference_batch_size
    return lr * {"none": 1.0, "linear": ratio, "sqrt": ratio**0.5}[rule]


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    fused: bool | None = None,
    foreach: bool | None = None,
    lr_scaling: str = "none",
    reference_batch_size: int = 64,
    batch_size: int | None = None,
) -> Optimizer:
    """An optimiser by name; ``momentum``/``nesterov`` apply to SGD, ``betas`` to Adam(W).

    ``fused`` updates all parameters in one kernel, ``foreach`` in a few batched
    ops (None: torch chooses); either beats a Python loop over small tensors.
    ``lr_scaling`` adapts ``lr`` to ``batch_size`` (the global batch of one
    update), see :func:`scaled_lr`.
    """
    if lr <= 0:
        raise ConfigError(f"optimizer.lr={lr} must be positive")
    if weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay={weight_decay} must be zero or positive")
    if fused and foreach:
        raise ConfigError("optimizer.fused and optimizer.foreach cannot both be true: pick one")
    if batch_size is not None:
        lr = scaled_lr(lr, batch_size, reference_batch_size, lr_scaling)
    kernels = {"fused": fused, "foreach": foreach}
    if name == "adam":
        return torch.optim.Adam(
            params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, **kernels
        )
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, **kernels
        )
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            **kernels,
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
        if total_steps < 4:  # a debug run of a few batches: no room for a cycle
            return None
        # Warm up for at least 2 steps: torch divides by (warm-up steps - 1).
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=total_steps,
            pct_start=max(warmup_fraction, 2 / total_steps),
        )
    elif name == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=step_epochs * steps_per_epoch, gamma=gamma
        )
    else:
        raise ConfigError(f"scheduler.name={name!r} is unknown; choose one of {list(SCHEDULERS)}")
    return {"scheduler": scheduler, "interval": "step"}
