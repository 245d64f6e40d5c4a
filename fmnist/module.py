"""``LitClassifier``: the loss, the metrics and the optimiser around a network.

The network is described by plain hyperparameters (``model={"name": "cnn", ...}``),
stored in every checkpoint, so ``LitClassifier.load_from_checkpoint(path)``
rebuilds it without the config that trained it.

>>> module = LitClassifier(model={"name": "mlp", "hidden": [32]})
>>> module(torch.zeros(4, 1, 28, 28)).shape
torch.Size([4, 10])
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from fmnist import CLASS_NAMES
from fmnist.augment import check_shift, shifted_views
from fmnist.data import BLACK
from fmnist.errors import ConfigError
from fmnist.metrics import TrainingTally
from fmnist.models import build_model
from fmnist.optim import build_optimizer, build_scheduler


def class_tag(name: str) -> str:
    """A class name usable in a metric tag: 'T-shirt/top' -> 'T-shirt_top'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


class LitClassifier(L.LightningModule):
    """Classifies images with cross-entropy; reports accuracy on every split.

    Args:
        model: Keyword arguments of :func:`fmnist.models.build_model` (``name`` and its options).
        optimizer: Keyword arguments of :func:`fmnist.optim.build_optimizer`.
        scheduler: Keyword arguments of :func:`fmnist.optim.build_scheduler` (``name="none"``: off).
        class_names: Names of the classes, in label order.
        label_smoothing: Cross-entropy label smoothing.
        tta_flip: Test on the mean of the logits of each image and its mirror image
            (validation stays single-view: it runs every epoch and must stay cheap).
        tta_shift: Also average over the image moved this many pixels right, left, down
            and up: five positions (times two with ``tta_flip``); 0 is off.

    The training step does as little per batch as it can: metrics are updated
    on the device and logged once per epoch, the loss and learning rate only on
    the steps the logger writes, so that nothing waits on the device mid-epoch.
    """

    def __init__(
        self,
        model: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        class_names: Sequence[str] = CLASS_NAMES,
        label_smoothing: float = 0.0,
        tta_flip: bool = False,
        tta_shift: int = 0,
    ) -> None:
        super().__init__()
        model = dict(model or {"name": "cnn"})
        optimizer = dict(optimizer or {"name": "adam"})
        scheduler = dict(scheduler or {"name": "none"})
        # logger=False: train.py logs the whole run config as hyperparameters instead.
        self.save_hyperparameters(
            {
                "model": model,
                "optimizer": optimizer,
                "scheduler": scheduler,
                "class_names": list(class_names),
                "label_smoothing": label_smoothing,
                "tta_flip": tta_flip,
                "tta_shift": tta_shift,
            },
            logger=False,
        )
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"module.label_smoothing={label_smoothing} must be in [0, 1)")
        check_shift("module.tta_shift", tta_shift)
        self.net = build_model(**model)
        self.channels_last = bool(model.get("channels_last", False))
        self.tta_flip = tta_flip
        self.tta_shift = tta_shift
        # Lets Lightning's summary show each layer's output shape, and TensorBoard draw the graph.
        self.example_input_array = torch.zeros(1, 1, 28, 28)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        num_classes = len(class_names)
        # Training accuracy and mean loss in one cheap update per batch, computed once per
        # epoch; no NaN check (StopOnDivergence's business: checking waits on the device).
        self.train_tally = TrainingTally()
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc_per_class = MulticlassAccuracy(num_classes, average=None)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.confusion_matrix: torch.Tensor | None = None
        # Best validation accuracy so far; saved in checkpoints so a resumed run keeps it.
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning records which hook is running in _current_fx_name before and after
        # each hook it calls: ~40 writes per training step. nn.Module.__setattr__ first
        # checks whether the value is a parameter, module or buffer (~1.4 µs); this
        # name is never one, so a plain write (~0.2 µs) does the same.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    def eval_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for testing: the mean over the views ``tta_flip`` and ``tta_shift`` ask for.

        Shifted views are padded with black, as the training crops are. The sum is
        kept in float32: bfloat16 would round away the differences between views.
        """
        views = shifted_views(images, self.tta_shift, fill=BLACK)
        if self.tta_flip:
            views += [view.flip(-1) for view in views]
        logits = self(views[0]).float()
        for view in views[1:]:
            logits = logits + self(view).float()
        return logits / len(views)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        images, labels = batch
        logits = self(images)
        loss = self.criterion(logits, labels)
        self.train_tally.update(logits.detach().argmax(dim=1), labels, loss.detach())
        # Lightning writes step metrics when (step + 1) % log_every_n_steps == 0, so the loss
        # and learning rate are logged on those steps only (a self.log call costs about as
        # much as a small model's forward pass on a CPU), and on the epoch's last batch for
        # the progress bar and the per-epoch line.
        last_batch = self.trainer.is_last_batch
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0 or last_batch:
            self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
            self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=len(labels))
        if last_batch:  # the epoch's means, once, before validation and callbacks
            epoch = self.train_tally.compute()
            self.log("train/loss_epoch", epoch["loss"], on_step=False, on_epoch=True)
            self.log("train/acc", epoch["acc"], on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_tally.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        loss, preds = self.criterion(logits, labels), logits.argmax(dim=1)
        self.val_acc(preds, labels)
        self.log("val/loss", loss, on_epoch=True, batch_size=len(labels))
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # two sanity batches say nothing about the best
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute())

    def test_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> dict[str, torch.Tensor]:
        images, labels = batch
        logits = self.eval_logits(images)
        loss, preds = self.criterion(logits, labels), logits.argmax(dim=1)
        self.test_acc(preds, labels)
        self.test_acc_per_class.update(preds, labels)
        self.test_confusion.update(preds, labels)
        self.log("test/loss", loss, on_epoch=True, batch_size=len(labels))
        self.log("test/acc", self.test_acc, on_epoch=True)
        return {"logits": logits.detach()}  # for callbacks (e.g. the misclassified images)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def on_test_epoch_end(self) -> None:
        per_class = self.test_acc_per_class.compute()
        for name, acc in zip(self.hparams.class_names, per_class, strict=True):
            self.log(f"test/acc_class/{class_tag(name)}", acc)
        self.test_acc_per_class.reset()
        # Rows: true class, columns: predicted; kept for pictures and reports.
        self.confusion_matrix = self.test_confusion.compute().cpu()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The random state (dropout), so a resumed run continues as if never stopped.
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])

    def configure_optimizers(self) -> Any:
        # The global batch of one update, for optimizer.lr_scaling.
        batch_size = getattr(self.trainer.datamodule, "batch_size", None)
        if batch_size is not None:
            batch_size *= self.trainer.world_size * self.trainer.accumulate_grad_batches
        optimizer = build_optimizer(
            self.parameters(), **self.hparams.optimizer, batch_size=batch_size
        )
        scheduler = build_scheduler(
            optimizer,
            total_steps=int(self.trainer.estimated_stepping_batches),
            steps_per_epoch=max(1, int(self.trainer.num_training_batches)),
            **self.hparams.scheduler,
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
