"""Callbacks that watch a run: the run plan at the start, one line per epoch."""

from __future__ import annotations

import logging
import time

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from fmnist.report import RunPlan, plan_table, render

log = logging.getLogger(__name__)


def plan_from_trainer(trainer: L.Trainer) -> RunPlan:
    """The run plan, from a trainer whose training data is loaded (from ``on_train_start``)."""
    datamodule = trainer.datamodule
    sizes = datamodule.sizes() if hasattr(datamodule, "sizes") else {}
    strategy = trainer.strategy
    device = str(strategy.root_device)
    if trainer.world_size > 1:
        device = f"{trainer.world_size} x {strategy.root_device.type} ({strategy.strategy_name})"
    return RunPlan(
        train_images=sizes.get("train", 0),
        val_images=sizes.get("val", 0) if trainer.limit_val_batches else 0,
        test_images=sizes.get("test", 10_000),
        batch_size=getattr(datamodule, "batch_size", 0),
        batches_per_epoch=int(trainer.num_training_batches),
        epochs=int(trainer.max_epochs),
        total_updates=int(trainer.estimated_stepping_batches),
        device=device,
        precision=str(trainer.precision),
    )


class RunPlanPrinter(L.Callback):
    """Prints the run plan (set sizes, batches, epochs, updates, device) before training."""

    def __init__(self) -> None:
        self.plan: RunPlan | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.plan = plan_from_trainer(trainer)
        if trainer.is_global_zero:
            log.info("\n%s", render(plan_table(self.plan)))


class EpochSummary(L.Callback):
    """Logs one line per epoch with the epoch metrics, for log files and non-terminals."""

    def __init__(self) -> None:
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        shown = {
            "train/loss_epoch": "train/loss",
            "train/acc": "train/acc",
            "val/loss": "val/loss",
            "val/acc": "val/acc",
            "val/acc_best": "best",
        }
        for key, label in shown.items():
            if key in metrics:
                parts.append(f"{label} {float(metrics[key]):.4f}")
        parts.append(f"{time.perf_counter() - self._start:.1f}s")
        log.info("  ".join(parts))
