"""The teaching's worked example, computed: one filter sliding over a tiny image.

    python -m fmnist.explain

Prints the 5x5 image and the 3x3 edge-detecting filter, the output map that
``torch.nn.Conv2d`` computes with them (without and with ``padding=1``), one
output value worked out by hand, and the parameter count of every layer of the
default CNN and the MLP baseline.
"""

from __future__ import annotations

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from fmnist.models import CNN, MLP, count_parameters

IMAGE = torch.tensor(
    [
        [1, 1, 1, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 1],
        [0, 0, 0, 1, 1],
    ],
    dtype=torch.float32,
)
EDGE_FILTER = torch.tensor(
    [
        [-1, -1, -1],
        [-1, 8, -1],
        [-1, -1, -1],
    ],
    dtype=torch.float32,
)


def convolve(image: torch.Tensor, kernel: torch.Tensor, padding: int) -> torch.Tensor:
    """``image`` through a one-filter ``nn.Conv2d`` whose weights are ``kernel`` (no bias)."""
    conv = nn.Conv2d(1, 1, kernel_size=kernel.shape[-1], padding=padding, bias=False)
    with torch.no_grad():
        conv.weight.copy_(kernel.view(1, 1, *kernel.shape))
        return conv(image.view(1, 1, *image.shape))[0, 0]


def by_hand(image: torch.Tensor, kernel: torch.Tensor, row: int, col: int) -> tuple[str, float]:
    """One output value of an unpadded convolution, as the sum of its nine products."""
    k = kernel.shape[0]
    patch = image[row : row + k, col : col + k]
    terms = [f"{int(w)}x{int(x)}" for w, x in zip(kernel.flatten(), patch.flatten(), strict=True)]
    return " + ".join(terms), float((patch * kernel).sum())


def grid(values: torch.Tensor) -> str:
    return "\n".join("  ".join(f"{int(v):3d}" for v in row) for row in values)


def describe(layer: nn.Module) -> tuple[str, str]:
    """A layer as written in code, and how its parameter count comes about."""
    if isinstance(layer, nn.Conv2d):
        k, (c_in, c_out) = layer.kernel_size[0], (layer.in_channels, layer.out_channels)
        code = f"Conv2d({c_in}, {c_out}, kernel_size={k}, padding={layer.padding[0]})"
        return code, f"{c_out} filters x {c_in} x {k} x {k} + {c_out} biases"
    if isinstance(layer, nn.Linear):
        c_in, c_out = layer.in_features, layer.out_features
        return f"Linear({c_in}, {c_out})", f"{c_in} x {c_out} weights + {c_out} biases"
    return type(layer).__name__, ""


def parameter_table(title: str, model: nn.Module) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("layer")
    table.add_column("how")
    table.add_column("parameters", justify="right")
    for module in model.modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if own:
            table.add_row(*describe(module), f"{own:,}")
    table.add_row("total", "", f"{count_parameters(model):,}", end_section=True)
    return table


def main() -> None:
    console = Console(highlight=False)
    console.print("A 5x5 image (1 = bright) and a 3x3 edge-detecting filter:\n")
    console.print(grid(IMAGE), "\n")
    console.print(grid(EDGE_FILTER), "\n")

    console.print("nn.Conv2d(1, 1, kernel_size=3, padding=0): the filter fits 3x3 positions\n")
    console.print(grid(convolve(IMAGE, EDGE_FILTER, padding=0)), "\n")
    console.print("nn.Conv2d(1, 1, kernel_size=3, padding=1): a frame of zeros keeps 5x5\n")
    console.print(grid(convolve(IMAGE, EDGE_FILTER, padding=1)), "\n")

    sums, value = by_hand(IMAGE, EDGE_FILTER, row=0, col=1)
    console.print("One position by hand: the filter over rows 1-3, columns 2-4 of the image.")
    console.print("Multiply each weight by the pixel under it, then add the nine products:")
    console.print(f"  {sums} = {value:g}")
    console.print(
        "Inside a flat region the products cancel (0); where bright meets dark they do not,"
        " so the map lights up along the edges.\n"
    )

    cnn, mlp = CNN(), MLP()
    console.print(parameter_table("The default CNN (the teaching network)", cnn))
    console.print(parameter_table("The MLP baseline (every pixel wired to every unit)", mlp))
    conv2 = cnn.features[1][0]
    dense_equivalent = (32 * 14 * 14) * (64 * 14 * 14)
    console.print(
        f"\nThe second convolution maps 32x14x14 values to 64x14x14 with "
        f"{sum(p.numel() for p in conv2.parameters()):,} parameters, because the same 3x3 "
        f"filters are reused at every position. A fully connected layer doing the same "
        f"would need {dense_equivalent:,} weights."
    )


if __name__ == "__main__":
    main()
