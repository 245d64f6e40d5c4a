"""Callbacks that watch a run: plan, progress lines, interruptions, numerical faults."""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from fmnist.errors import FmnistError
from fmnist.report import RunPlan, plan_table, render

log = logging.getLogger(__name__)


def plan_from_trainer(trainer: L.Trainer) -> RunPlan:
    """The run plan, from a trainer whose training data is loaded (from ``on_train_start``)."""
    datamodule = trainer.datamodule
    sizes = datamodule.sizes() if hasattr(datamodule, "sizes") else {}
    strategy = trainer.strategy
    device = str(strategy.root_device)
    if trainer.world_size > 1:
        name = type(strategy).__name__.removesuffix("Strategy").lower()
        device = f"{trainer.world_size} x {strategy.root_device.type} ({name})"
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


class ProgressBar(RichProgressBar):
    """Lightning's Rich progress bar, updated every ``refresh_rate`` batches, not every batch.

    Lightning's own bar reads every logged metric after every training batch
    whatever its refresh rate (``.item()``, which on a GPU waits for the device);
    with a small CNN that costs a noticeable share of each step.
    """

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        done = batch_idx + 1
        if done % max(1, self.refresh_rate) == 0 or done == self.total_train_batches:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


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


class DivergedError(FmnistError):
    """The training loss became NaN, infinite, or absurdly large."""


class StopOnDivergence(L.Callback):
    """Stops at the first NaN, infinite or exploding training loss, naming the step and cause.

    Cross-entropy over 10 classes starts near ln(10) = 2.3; a loss above
    ``max_loss`` means the weights have blown up even while the numbers are
    still finite (Adam with lr=1e4 gets there in one step). Nothing is saved
    after that point, so the last good checkpoint is kept.

    Reading the loss makes the host wait for the device, so on an accelerator
    the loss is read every ``check_every_n_steps`` steps (a NaN stays NaN); on
    the CPU, where reading is free, every step.
    """

    def __init__(self, max_loss: float = 100.0, check_every_n_steps: int = 50) -> None:
        self.max_loss = max_loss
        self.check_every_n_steps = check_every_n_steps

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None:
            return
        on_cpu = loss.device.type == "cpu"
        if not on_cpu and trainer.global_step % self.check_every_n_steps:
            return
        value = float(loss)
        if math.isfinite(value) and value <= self.max_loss:
            return
        what = f"became {value}" if not math.isfinite(value) else f"reached {value:.3g}"
        when = f"at step {trainer.global_step}" if on_cpu else f"by step {trainer.global_step}"
        lr = pl_module.hparams.get("optimizer", {}).get("lr")
        last = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none saved yet"
        raise DivergedError(
            f"training diverged: train/loss {what} {when} "
            f"(epoch {trainer.current_epoch + 1}, batch {batch_idx + 1}). The usual cause is a "
            f"learning rate too high for this model (optimizer.lr={lr}): try a smaller one, or "
            f"clip gradients (trainer.gradient_clip_val=1.0). Last good checkpoint: {last}"
        )


class CheckpointOnInterrupt(L.Callback):
    """Ctrl-C or SIGTERM: finish the current batch, save the exact state, say how to resume.

    Ctrl-C is turned into Lightning's graceful SIGTERM stop (at the end of the
    batch), so the checkpoint holds whole updates; a second Ctrl-C stops at
    once. The checkpoint replaces ``last.ckpt``: it is the newest state.
    """

    def __init__(self, dirpath: str | Path, run_dir: str | Path, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.run_dir = Path(run_dir)
        self.signal_name = "SIGTERM"
        self._previous_handler: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if _in_main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_sigint()

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.signal_name = "Ctrl-C"
        log.warning("Ctrl-C: stopping after this batch (press Ctrl-C again to stop at once)")
        self._restore_sigint()
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's graceful stop, at the batch's end

    def _restore_sigint(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_sigint()
        if not isinstance(exception, KeyboardInterrupt | SIGTERMException):
            return
        if trainer.state.fn != "fit":
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state, to resume
        if trainer.is_global_zero:
            log.warning(
                "%s: stopped at step %d (epoch %d). Saved %s\n"
                "Resume with: python train.py resume=%s",
                self.signal_name,
                trainer.global_step,
                trainer.current_epoch + 1,
                self.path,
                self.run_dir,
            )


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
