"""The training epoch's accuracy and mean loss, tallied at the least cost per step."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class TrainingTally(Metric):
    """Correct predictions, images seen and summed loss over a training epoch.

    ``MulticlassAccuracy`` and ``MeanMetric`` give the same two numbers, but their
    per-call checks and bookkeeping, written for any input, cost ~0.25 ms a step
    inside training with bf16 on a CPU (~2% of the step), against ~0.11 ms for
    these three in-place additions. As with any torchmetrics state, the sums are
    added up across processes when computed.

    >>> tally = TrainingTally()
    >>> tally.update(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 0]), torch.tensor(0.5))
    >>> {name: round(float(value), 4) for name, value in tally.compute().items()}
    {'acc': 0.6667, 'loss': 0.5}
    """

    full_state_update = False
    correct: torch.Tensor
    seen: torch.Tensor
    loss_sum: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("seen", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("loss_sum", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> None:
        """Add a batch: predicted and true classes, and the batch's mean loss."""
        self.correct.add_((preds == target).sum())
        self.seen.add_(target.numel())
        self.loss_sum.add_(loss.float() * target.numel())

    def compute(self) -> dict[str, torch.Tensor]:
        """``acc``: the share of images classified right; ``loss``: the mean loss per image."""
        seen = self.seen.clamp(min=1)
        return {"acc": self.correct.float() / seen, "loss": self.loss_sum / seen}
