"""Pictures of what the network learned, for TensorBoard and the run folder.

- the first layer's filters, at the start and after every epoch (the slider shows them form);
- feature maps: one test image per class through each conv block;
- after testing: the confusion matrix, accuracy per class, the most confident mistakes.

Drawing happens only at epoch ends and after testing, on a handful of images,
so it costs nothing measurable per training step. ``callbacks.pictures=null``
turns it all off. Figures are drawn with matplotlib's object API (no pyplot
state) and also saved as PNG files in ``<run>/pictures/``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F
from torchvision.utils import make_grid

from fmnist.data import denormalize, normalize
from fmnist.models import CNN
from fmnist.module import class_tag

log = logging.getLogger(__name__)


# -- pure drawing functions ------------------------------------------------------------


def signed_to_rgb(values: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] -> RGB in [0, 1]: negative blue, zero white, positive red."""
    v = values.clamp(-1, 1)
    red = 1 - (-v).clamp(min=0)
    green = 1 - v.abs()
    blue = 1 - v.clamp(min=0)
    return torch.stack([red, green, blue], dim=-3)


def filter_grid(weight: torch.Tensor, pixels: int = 24) -> torch.Tensor:
    """A conv layer's filters (first input channel) as one RGB image [3, H, W].

    Each filter is scaled by its own largest absolute weight, so its pattern
    shows whatever its size; red weights add, blue weights subtract.
    """
    filters = weight.detach().float().cpu()[:, 0]  # [out, k, k]
    scale = filters.abs().amax(dim=(1, 2), keepdim=True).clamp(min=1e-8)
    rgb = signed_to_rgb(filters / scale)  # [out, 3, k, k]
    rgb = F.interpolate(rgb, size=(pixels, pixels), mode="nearest")
    return make_grid(rgb, nrow=8, padding=2, pad_value=0.5)


def feature_map_grid(maps: torch.Tensor, pixels: int = 28) -> torch.Tensor:
    """One image's feature maps [C, H, W] as a grey grid [3, H', W'], each map min-max scaled."""
    maps = maps.detach().float().cpu()
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    scaled = ((maps - low) / (high - low).clamp(min=1e-8)).unsqueeze(1)
    scaled = F.interpolate(scaled, size=(pixels, pixels), mode="nearest")
    return make_grid(scaled, nrow=8, padding=2, pad_value=1.0)


def conv_block_outputs(net: CNN, images: torch.Tensor) -> list[torch.Tensor]:
    """What each conv block's ReLU gives: before pooling where the block pools last
    (the full-resolution maps), its pooled output where it pools first (``pool_first``)."""
    outputs = []
    x = images
    for block in net.features:
        if isinstance(block[-1], nn.MaxPool2d):
            before_pool = block[:-1](x)
            outputs.append(before_pool)
            x = block[-1](before_pool)
        else:
            x = block(x)
            outputs.append(x)
    return outputs


def figure_to_array(figure: Figure) -> np.ndarray:
    """A matplotlib figure as an RGB array [H, W, 3]."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def confusion_figure(matrix: torch.Tensor, class_names: Sequence[str]) -> Figure:
    """Counts and row-normalised rates (rows: true class, columns: predicted)."""
    counts = matrix.float().cpu().numpy()
    rates = counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None)
    figure = Figure(figsize=(16, 7), layout="constrained")
    for ax, data, title, fmt in zip(
        figure.subplots(1, 2),
        (counts, rates),
        ("Test confusion matrix (counts)", "Row-normalised (recall per class)"),
        ("{:.0f}", "{:.2f}"),
        strict=True,
    ):
        ax.imshow(data, cmap="Blues")
        ax.set_title(title)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
        ax.set_yticks(range(len(class_names)), class_names)
        high = data.max() * 0.6
        for (row, col), value in np.ndenumerate(data):
            ax.text(col, row, fmt.format(value), ha="center", va="center", fontsize=8,
                    color="white" if value > high else "black")  # fmt: skip
    return figure


def per_class_figure(accuracy: Sequence[float], class_names: Sequence[str]) -> Figure:
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.subplots()
    ax.barh(range(len(class_names)), accuracy, color="tab:blue")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("test accuracy")
    for i, value in enumerate(accuracy):
        ax.text(min(value, 0.9), i, f" {value:.1%}", va="center", fontsize=9)
    return figure


def mistakes_figure(
    images: torch.Tensor,
    true: Sequence[int],
    predicted: Sequence[int],
    confidence: Sequence[float],
    class_names: Sequence[str],
    columns: int = 8,
) -> Figure:
    """Misclassified images, titled with the true label, the prediction and its probability."""
    rows = max(1, -(-len(images) // columns))
    figure = Figure(figsize=(2 * columns, 2.4 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, t, p, c in zip(axes, images, true, predicted, confidence, strict=False):
        ax.imshow(image.squeeze(0).cpu().numpy(), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"true: {class_names[t]}\npred: {class_names[p]} ({c:.0%})", fontsize=8)
    return figure


# -- the callback --------------------------------------------------------------------------


class TensorBoardPictures(L.Callback):
    """Logs the pictures above to TensorBoard and saves the test figures as PNG files.

    Args:
        filters: The first conv layer's filters, at the start and after each epoch.
        feature_maps: One test image per class through every conv block, after each epoch.
        test_figures: Confusion matrix and accuracy per class, after testing.
        mistakes: How many of the most confident test mistakes to show (0: none).
    """

    def __init__(
        self,
        filters: bool = True,
        feature_maps: bool = True,
        test_figures: bool = True,
        mistakes: int = 24,
    ) -> None:
        self.filters = filters
        self.feature_maps = feature_maps
        self.test_figures = test_figures
        self.mistakes = mistakes
        self._examples: torch.Tensor | None = None
        self._mistakes: dict[str, torch.Tensor] = {}

    # -- helpers --

    @staticmethod
    def _writer(trainer: L.Trainer) -> Any | None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    @staticmethod
    def _first_conv(module: nn.Module) -> nn.Conv2d | None:
        return next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)

    def _log_filters(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer, conv = self._writer(trainer), self._first_conv(pl_module)
        if self.filters and writer is not None and conv is not None:
            writer.add_image("filters/conv1", filter_grid(conv.weight), trainer.global_step)

    def _example_images(self, trainer: L.Trainer) -> torch.Tensor | None:
        if self._examples is None:
            datamodule = trainer.datamodule
            if not hasattr(datamodule, "examples_per_class"):
                return None
            self._examples = datamodule.examples_per_class()[0]
        return self._examples

    # -- training --

    @rank_zero_only
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_filters(trainer, pl_module)

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_filters(trainer, pl_module)
        writer, net = self._writer(trainer), getattr(pl_module, "net", None)
        if not (self.feature_maps and writer is not None and isinstance(net, CNN)):
            return
        examples = self._example_images(trainer)
        if examples is None:
            return
        images = normalize(examples.to(pl_module.device))
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            blocks = conv_block_outputs(net, images)
        pl_module.train(was_training)
        names = pl_module.hparams.class_names
        for b, maps in enumerate(blocks, start=1):
            for i, name in enumerate(names):
                tag = f"feature_maps/block{b}/{i}_{class_tag(name)}"
                writer.add_image(tag, feature_map_grid(maps[i]), trainer.global_step)

    # -- testing --

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mistakes = {}

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self.mistakes or not isinstance(outputs, dict) or "logits" not in outputs:
            return
        images, labels = batch
        probs = outputs["logits"].softmax(dim=1)
        confidence, predicted = probs.max(dim=1)
        wrong = predicted != labels
        found = {
            "images": denormalize(images[wrong]).cpu(),
            "true": labels[wrong].cpu(),
            "predicted": predicted[wrong].cpu(),
            "confidence": confidence[wrong].float().cpu(),
        }
        if self._mistakes:
            found = {k: torch.cat([self._mistakes[k], v]) for k, v in found.items()}
        keep = found["confidence"].argsort(descending=True)[: self.mistakes]
        self._mistakes = {k: v[keep] for k, v in found.items()}

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        names = list(pl_module.hparams.class_names)
        figures: dict[str, Figure] = {}
        matrix = getattr(pl_module, "confusion_matrix", None)
        if self.test_figures and matrix is not None:
            figures["confusion_matrix"] = confusion_figure(matrix, names)
            per_class = (matrix.diag() / matrix.sum(dim=1).clamp(min=1)).tolist()
            figures["per_class_accuracy"] = per_class_figure(per_class, names)
        if self._mistakes and len(self._mistakes["true"]):
            m = self._mistakes
            figures["misclassified"] = mistakes_figure(
                m["images"], m["true"].tolist(), m["predicted"].tolist(),
                m["confidence"].tolist(), names,
            )  # fmt: skip
        writer = self._writer(trainer)
        folder = Path(trainer.default_root_dir) / "pictures"
        folder.mkdir(parents=True, exist_ok=True)
        for name, figure in figures.items():
            figure.savefig(folder / f"{name}.png", dpi=100)
            if writer is not None:
                writer.add_image(
                    f"test/{name}", figure_to_array(figure), trainer.global_step, dataformats="HWC"
                )
        if figures:
            log.info("Pictures saved in %s", folder)
