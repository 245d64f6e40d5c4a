"""The networks: the teaching CNN layer for layer, shapes for other settings, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fmnist.errors import ConfigError
from fmnist.models import CNN, MLP, build_model, count_parameters


def layers_of(model: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def test_default_cnn_is_the_teaching_network() -> None:
    model = CNN()
    conv1, conv2 = layers_of(model, nn.Conv2d)
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size, conv1.padding) == (
        1,
        32,
        (3, 3),
        (1, 1),
    )
    assert (conv2.in_channels, conv2.out_channels, conv2.kernel_size, conv2.padding) == (
        32,
        64,
        (3, 3),
        (1, 1),
    )
    fc1, fc2 = layers_of(model, nn.Linear)
    assert (fc1.in_features, fc1.out_features) == (3136, 128)  # 64 filters x 7 x 7
    assert (fc2.in_features, fc2.out_features) == (128, 10)
    assert len(layers_of(model, nn.MaxPool2d)) == 2
    assert len(layers_of(model, nn.ReLU)) == 3
    # conv: weights + biases; linear likewise
    expected = (1 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (3136 * 128 + 128) + (128 * 10 + 10)
    assert count_parameters(model) == expected == 421_642


@pytest.mark.parametrize("channels", [[8], [16, 32], [16, 32, 64]])
@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7])
def test_cnn_output_shape(channels: list[int], kernel_size: int) -> None:
    model = CNN(channels=channels, kernel_size=kernel_size, hidden=32)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert len(layers_of(model, nn.Conv2d)) == len(channels)


def test_four_blocks_fit_small_kernels_only() -> None:
    # The fourth block meets a 3x3 map: a 3x3 kernel fits, a 5x5 one does not.
    assert CNN(channels=[8] * 4, kernel_size=3)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    with pytest.raises(ConfigError, match="kernel_size=5 at block 4 is larger than the 3x3"):
        CNN(channels=[8] * 4, kernel_size=5)


def test_feature_map_sizes_follow_pooling() -> None:
    model = CNN(channels=[4, 4, 4])
    x = torch.zeros(1, 1, 28, 28)
    sizes = []
    for block in model.features:
        x = block(x)
        sizes.append(x.shape[-1])
    assert sizes == [14, 7, 3]
    assert layers_of(model, nn.Linear)[0].in_features == 4 * 3 * 3


def test_kernel_size_per_block_and_batch_norm() -> None:
    model = CNN(channels=[8, 16], kernel_size=[5, 3], batch_norm=True)
    conv1, conv2 = layers_of(model, nn.Conv2d)
    assert conv1.kernel_size == (5, 5) and conv1.padding == (2, 2) and conv1.bias is None
    assert conv2.kernel_size == (3, 3)
    assert len(layers_of(model, nn.BatchNorm2d)) == 2


def test_pool_first_without_batch_norm_is_the_same_network() -> None:
    # Max-pool and ReLU commute, so pooling first changes the speed, not the function.
    torch.manual_seed(0)
    usual, pooled_first = CNN(channels=[8, 16]), CNN(channels=[8, 16], pool_first=True)
    pooled_first.load_state_dict(usual.state_dict())
    images = torch.randn(5, 1, 28, 28)
    assert torch.equal(usual(images), pooled_first(images))
    assert [type(m) for m in pooled_first.features[0]] == [nn.Conv2d, nn.MaxPool2d, nn.ReLU]


def test_pool_first_normalises_pooled_maps() -> None:
    model = CNN(channels=[8, 16], batch_norm=True, pool_first=True)
    kinds = [type(m) for m in model.features[0]]
    assert kinds == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.ReLU]
    x = model.features[0][:2](torch.randn(4, 1, 28, 28))
    assert x.shape == (4, 8, 14, 14)  # what batch norm sees: a quarter of the values
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_size": 4}, "kernel_size=4 is not allowed"),
        ({"kernel_size": 0}, "kernel_size=0 is not allowed"),
        ({"kernel_size": 9}, "kernel_size=9 is not allowed"),
        ({"kernel_size": [3, 3, 3]}, "3 sizes for 2 conv blocks"),
        ({"channels": []}, "at least one positive"),
        ({"channels": [32, 0]}, "at least one positive"),
        ({"channels": [8] * 5}, "block 5 would get a 1x1 feature map"),
        ({"dropout": 1.0}, r"dropout=1.0 must be in \[0, 1\)"),
    ],
)
def test_bad_cnn_settings_are_explained(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CNN(**kwargs)


def test_mlp_baseline() -> None:
    model = MLP()
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(model) == 784 * 128 + 128 + 128 * 10 + 10
    assert (
        model(torch.zeros(2, 1, 28, 28)).shape
        == MLP(hidden=[64, 32])(torch.zeros(2, 1, 28, 28)).shape
    )


def test_build_model_by_name() -> None:
    assert isinstance(build_model("cnn", channels=[8]), CNN)
    assert isinstance(build_model("mlp"), MLP)
    with pytest.raises(
        ConfigError, match=r"model.name='resnet' is unknown; choose one of \['cnn', 'mlp'\]"
    ):
        build_model("resnet")
    with pytest.raises(ConfigError, match="model 'mlp'.*channels"):
        build_model("mlp", channels=[8])
