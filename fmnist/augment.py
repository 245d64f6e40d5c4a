"""Data augmentation applied to whole batches, on whatever device the batch is on.

Fashion-MNIST images are 28x28 and a step of a small CNN takes well under a
millisecond per image, so the usual per-sample PIL/torchvision transforms in
the data loader would cost more than the training itself (and the data module
deliberately has no per-sample Python: see :mod:`fmnist.data`). On a GPU the
batch is already in device memory when it is normalised, so augmenting it
there, as a handful of tensor operations over the whole batch, is nearly free
and needs no worker processes.

Every random choice is drawn per image, from torch's global RNG on the images'
device, so ``torch.manual_seed`` makes a CPU run reproducible.

>>> BatchAugment(flip=True, crop_padding=2, fill=-0.81)
BatchAugment(flip=True, crop_padding=2, fill=-0.81)
>>> BatchAugment().enabled
False
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from fmnist.errors import ConfigError

# A shift of more than 8 pixels moves over a quarter of a 28x28 garment out of
# the picture: that no longer looks like the same class.
MAX_CROP_PADDING = 8


class BatchAugment(torch.nn.Module):
    """Random flip, shifted crop and erasing for a batch of normalised images.

    The parts run in the usual torchvision order: crop, flip, then erasing (so
    that an erased rectangle is not moved or padded afterwards). Each is off by
    default, and a batch passes through untouched when all are off.

    Args:
        flip: flip each image left-right with probability 0.5. Fashion-MNIST
            garments are (nearly) left-right symmetric, so the label still holds.
        crop_padding: shift each image by a random whole number of pixels in
            ``[-crop_padding, crop_padding]``, in x and y independently, filling
            the uncovered border with ``fill``. The same as torchvision's
            ``RandomCrop(28, padding=crop_padding)``.
        erasing: probability of erasing one random rectangle of each image
            (Zhong et al., 2017, "Random Erasing Data Augmentation"). The
            rectangle is set to 0, which after normalisation is the mean pixel.
        erasing_scale: range of the rectangle's area, as a fraction of the image.
        erasing_ratio: range of the rectangle's aspect ratio (height / width),
            drawn log-uniformly so that tall and wide are equally likely.
        fill: value for the border uncovered by a crop: the caller passes the
            normalised value of a black pixel, which is what the padding of an
            unnormalised image would have been.
    """

    def __init__(
        self,
        flip: bool = False,
        crop_padding: int = 0,
        erasing: float = 0.0,
        erasing_scale: tuple[float, float] = (0.02, 0.25),
        erasing_ratio: tuple[float, float] = (0.3, 3.3),
        fill: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(flip, bool):
            raise ConfigError(f"data.augment.flip={flip!r} must be true or false")
        check_shift("data.augment.crop_padding", crop_padding)
        if isinstance(erasing, bool) or not isinstance(erasing, (int, float)):
            raise ConfigError(f"data.augment.erasing={erasing!r} must be a probability from 0 to 1")
        if not 0.0 <= erasing <= 1.0:  # also rejects NaN
            raise ConfigError(f"data.augment.erasing={erasing!r} must be a probability from 0 to 1")
        scale = _range("data.augment.erasing_scale", erasing_scale)
        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ConfigError(
                f"data.augment.erasing_scale={list(scale)} must be [low, high] fractions of "
                "the image area with 0 < low <= high <= 1"
            )
        ratio = _range("data.augment.erasing_ratio", erasing_ratio)
        if not (0.0 < ratio[0] <= ratio[1] and math.isfinite(ratio[1])):
            raise ConfigError(
                f"data.augment.erasing_ratio={list(ratio)} must be [low, high] aspect ratios "
                "(height / width) with 0 < low <= high"
            )
        fill = float(fill)
        if not math.isfinite(fill):
            raise ConfigError(f"the crop padding fill value must be finite, not {fill}")
        self.flip = flip
        self.crop_padding = crop_padding
        self.erasing = float(erasing)
        self.erasing_scale = scale
        self.erasing_ratio = ratio
        self.fill = fill

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is switched on (if not, ``forward`` is the identity)."""
        return self.flip or self.crop_padding > 0 or self.erasing > 0.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Augment a float batch ``(N, C, H, W)``; a new tensor of the same shape, dtype, device.

        When nothing is enabled the input itself is returned, not a copy, so
        that a disabled augment costs nothing.
        """
        if images.ndim != 4:
            raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"expected normalised float images, got {images.dtype}")
        if not self.enabled:
            return images
        if self.crop_padding > 0:
            images = self._crop(images)
        if self.flip:
            images = self._flip(images)
        if self.erasing > 0.0:
            images = self._erase(images)
        return images

    def _crop(self, images: torch.Tensor) -> torch.Tensor:
        """Pad once, then gather one shifted H x W window per image by advanced indexing."""
        n, c, h, w = images.shape
        p = self.crop_padding
        device = images.device
        padded = F.pad(images, (p, p, p, p), mode="constant", value=self.fill)
        # Top-left corner of each window in the padded batch: 0..2p, i.e. offset -p..p.
        top = torch.randint(0, 2 * p + 1, (n,), device=device)
        left = torch.randint(0, 2 * p + 1, (n,), device=device)
        rows = top[:, None] + torch.arange(h, device=device)  # (N, H)
        cols = left[:, None] + torch.arange(w, device=device)  # (N, W)
        return padded[
            torch.arange(n, device=device)[:, None, None, None],
            torch.arange(c, device=device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]

    def _flip(self, images: torch.Tensor) -> torch.Tensor:
        """Mirror a random half (on average) of the batch left-right."""
        flipped = torch.rand(images.shape[0], device=images.device) < 0.5
        return torch.where(flipped[:, None, None, None], images.flip(-1), images)

    def _erase(self, images: torch.Tensor) -> torch.Tensor:
        """Zero one random rectangle in each image chosen with probability ``erasing``.

        The rectangle's height comes from the drawn area and aspect ratio; its
        width is then chosen so that height x width stays within
        ``erasing_scale`` wherever the pixel grid and the image allow (rounding
        both sides independently can miss a small area by 20%).
        """
        n, _, h, w = images.shape
        device = images.device
        image_area = float(h * w)
        lo_scale, hi_scale = self.erasing_scale
        lo_ratio, hi_ratio = self.erasing_ratio

        erase = torch.rand(n, device=device) < self.erasing
        area = image_area * (lo_scale + (hi_scale - lo_scale) * torch.rand(n, device=device))
        log_ratio = math.log(lo_ratio) + (math.log(hi_ratio) - math.log(lo_ratio)) * torch.rand(
            n, device=device
        )
        height = torch.sqrt(area * torch.exp(log_ratio)).round().clamp(1, h)
        width = (area / height).round()
        width = width.clamp(
            torch.ceil(image_area * lo_scale / height), torch.floor(image_area * hi_scale / height)
        )
        width = width.clamp(1, w)
        height, width = height.long(), width.long()
        top = (torch.rand(n, device=device) * (h - height + 1)).long()
        left = (torch.rand(n, device=device) * (w - width + 1)).long()

        ys = torch.arange(h, device=device)
        xs = torch.arange(w, device=device)
        in_rows = (ys >= top[:, None]) & (ys < (top + height)[:, None])  # (N, H)
        in_cols = (xs >= left[:, None]) & (xs < (left + width)[:, None])  # (N, W)
        mask = erase[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
        return images.masked_fill(mask[:, None], 0.0)

    def extra_repr(self) -> str:
        """The enabled parts only, so a printed model shows what is really applied."""
        parts = []
        if self.flip:
            parts.append("flip=True")
        if self.crop_padding:
            parts.append(f"crop_padding={self.crop_padding}")
        if self.erasing:
            parts.append(
                f"erasing={self.erasing}, erasing_scale={self.erasing_scale}, "
                f"erasing_ratio={self.erasing_ratio}"
            )
        if self.crop_padding:
            parts.append(f"fill={self.fill}")
        return ", ".join(parts) if parts else "disabled"


def check_shift(key: str, value: Any) -> None:
    """Refuse a shift that is not a whole number of pixels from 0 to ``MAX_CROP_PADDING``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CROP_PADDING:
        raise ConfigError(
            f"{key}={value!r} must be a whole number of pixels from 0 (off) to {MAX_CROP_PADDING}"
        )


def _range(key: str, value: Sequence[float]) -> tuple[float, float]:
    """A ``[low, high]`` pair from a tuple or a Hydra list, as floats."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} must be a pair [low, high] of numbers") from None
    return low, high


def build_augment(options: Mapping[str, Any] | None, fill: float = 0.0) -> BatchAugment:
    """A :class:`BatchAugment` from the ``data.augment`` config, naming a key it does not know."""
    try:
        return BatchAugment(**dict(options or {}), fill=fill)
    except TypeError as err:  # an option BatchAugment does not take
        known = "flip, crop_padding, erasing, erasing_scale, erasing_ratio"
        raise ConfigError(f"data.augment: {err}; the options are {known}") from err


def shifted_views(images: torch.Tensor, shift: int, fill: float) -> list[torch.Tensor]:
    """The batch itself, then moved ``shift`` pixels right, left, down and up.

    For test-time averaging: five views, each with its uncovered border set to
    ``fill`` (the full grid of offsets costs nearly twice as much for about the
    same accuracy). ``shift=0`` returns just the batch.

    >>> [tuple(v.shape) for v in shifted_views(torch.zeros(2, 1, 28, 28), 1, 0.0)]
    [(2, 1, 28, 28), (2, 1, 28, 28), (2, 1, 28, 28), (2, 1, 28, 28), (2, 1, 28, 28)]
    """
    if shift == 0:
        return [images]
    s = shift
    h, w = images.shape[-2:]
    padded = F.pad(images, (s, s, s, s), mode="constant", value=fill)
    # (top, left) of each window in the padded batch; (s, s) is the image itself.
    corners = [(s, s), (s, 0), (s, 2 * s), (0, s), (2 * s, s)]
    return [padded[..., top : top + h, left : left + w] for top, left in corners]
