"""Plain ``nn.Module`` networks for 28x28 grey images; no Lightning here.

The default :class:`CNN` is the teaching network, layer for layer:

>>> CNN()
CNN(
  (features): Sequential(
    (0): Sequential(
      (0): Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
      (1): ReLU()
      (2): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
    )
    (1): Sequential(
      (0): Conv2d(32, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
      (1): ReLU()
      (2): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
    )
  )
  (classifier): Sequential(
    (0): Flatten(start_dim=1, end_dim=-1)
    (1): Linear(in_features=3136, out_features=128, bias=True)
    (2): ReLU()
    (3): Dropout(p=0.0, inplace=False)
    (4): Linear(in_features=128, out_features=10, bias=True)
  )
)

Models are built by name (:func:`build_model`) so that a checkpoint can rebuild
its network from plain hyperparameters without importing arbitrary code.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fmnist.errors import ConfigError

IMAGE_SIZE = 28
NUM_CLASSES = 10
MAX_KERNEL_SIZE = 7


def _kernel_sizes(kernel_size: int | Sequence[int], num_blocks: int) -> list[int]:
    """One kernel size per conv block: a single int is used for every block."""
    sizes = [int(kernel_size)] * num_blocks if isinstance(kernel_size, int) else list(kernel_size)
    if len(sizes) != num_blocks:
        raise ConfigError(
            f"model.kernel_size={sizes} has {len(sizes)} sizes for {num_blocks} conv blocks "
            "(model.channels); give one size, or one per block"
        )
    for k in sizes:
        if k < 1 or k > MAX_KERNEL_SIZE or k % 2 == 0:
            raise ConfigError(
                f"model.kernel_size={k} is not allowed: use an odd size from 1 to "
                f"{MAX_KERNEL_SIZE} (1, 3, 5 or 7), so that padding keeps the image centred"
            )
    return sizes


class CNN(nn.Module):
    """Conv blocks (conv -> [batch norm] -> ReLU -> 2x2 max-pool), then two linear layers.

    Args:
        channels: Filters of each conv block; its length is the number of blocks.
        kernel_size: Odd filter size, one for all blocks or one per block.
        hidden: Width of the hidden linear layer.
        dropout: Dropout before the last layer.
        batch_norm: Batch norm after each convolution.
        pool_first: Pool right after each convolution (conv -> max-pool -> [batch norm]
            -> ReLU), so that batch norm and ReLU work on a quarter of the values. With
            batch norm: a faster step, and a slightly different network (statistics of
            pooled maps). Without: the same network (max-pool and ReLU commute), about
            as fast.
        in_channels: Channels of the input images (1: grey).
        num_classes: Number of outputs.
        image_size: Height and width of the input images.

    Each block's padding is ``kernel_size // 2``, so convolution keeps the size
    and only pooling halves it; the flatten size follows from that.

    >>> CNN(channels=[16, 32, 64], kernel_size=5)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64),
        kernel_size: int | Sequence[int] = 3,
        hidden: int = 128,
        dropout: float = 0.0,
        batch_norm: bool = False,
        pool_first: bool = False,
        in_channels: int = 1,
        num_classes: int = NUM_CLASSES,
        image_size: int = IMAGE_SIZE,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ConfigError(
                f"model.channels={channels} must list at least one positive number of filters"
            )
        if hidden < 1:
            raise ConfigError(f"model.hidden={hidden} must be at least 1")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout={dropout} must be in [0, 1)")
        kernel_sizes = _kernel_sizes(kernel_size, len(channels))

        blocks = []
        size, c_in = image_size, in_channels
        for i, (c_out, k) in enumerate(zip(channels, kernel_sizes, strict=True), start=1):
            if size < 2:
                raise ConfigError(
                    f"model.channels has too many blocks: block {i} would get a {size}x{size} "
                    f"feature map, too small for 2x2 pooling ({image_size}x{image_size} images "
                    f"allow at most {i - 1} blocks)"
                )
            if k > size:
                raise ConfigError(
                    f"model.kernel_size={k} at block {i} is larger than the {size}x{size} "
                    f"feature map it meets there: use a kernel of at most {size}, or fewer blocks"
                )
            conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=not batch_norm)
            activation = [nn.BatchNorm2d(c_out), nn.ReLU()] if batch_norm else [nn.ReLU()]
            if pool_first:
                blocks.append(nn.Sequential(conv, nn.MaxPool2d(2), *activation))
            else:
                blocks.append(nn.Sequential(conv, *activation, nn.MaxPool2d(2)))
            size, c_in = size // 2, c_out
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * size * size, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """The fully connected baseline: every pixel connected to every hidden unit.

    >>> MLP()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
        in_features: int = IMAGE_SIZE * IMAGE_SIZE,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden]
        if min(hidden, default=1) < 1:
            raise ConfigError(f"model.hidden={hidden} must hold positive layer widths")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout={dropout} must be in [0, 1)")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


MODELS: dict[str, type[nn.Module]] = {"cnn": CNN, "mlp": MLP}

# How a network runs rather than what it is: they change speed, not the weights,
# so a checkpoint trained with one setting resumes or evaluates with another.
RUNTIME_OPTIONS = ("channels_last", "compile")


def architecture_of(model: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint's weights depend on: a ``model`` config without its runtime
    options, and with the network's defaults for the settings it leaves out (so that a
    checkpoint written before a setting existed still matches a config that has it).

    >>> architecture_of({"name": "mlp", "hidden": [64], "channels_last": True})
    {'hidden': [64], 'dropout': 0.0, 'in_features': 784, 'num_classes': 10, 'name': 'mlp'}
    """
    defaults = {}
    if model.get("name") in MODELS:
        signature = inspect.signature(MODELS[model["name"]])
        defaults = {  # as a config holds them: lists, not tuples
            name: list(p.default) if isinstance(p.default, tuple) else p.default
            for name, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty
        }
    merged = {**defaults, **model}
    return {k: v for k, v in merged.items() if k not in RUNTIME_OPTIONS}


def build_model(
    name: str, channels_last: bool = False, compile: bool = False, **kwargs: Any
) -> nn.Module:
    """Build a registered model by name, e.g. ``build_model("cnn", channels=[16, 32])``.

    ``channels_last`` stores conv weights as NHWC, the layout oneDNN (CPU) and
    cuDNN (tensor cores) are fastest with; ``compile`` compiles the network with
    ``torch.compile`` on its first call (in place: its weights keep their names).
    """
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r} is unknown; choose one of {sorted(MODELS)}")
    try:
        model = MODELS[name](**kwargs)
    except TypeError as err:  # an option this model does not take
        raise ConfigError(f"model {name!r}: {err}") from err
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model.compile()
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
