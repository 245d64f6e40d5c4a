"""Batch augmentation: each part does exactly what it says, per image, reproducibly."""

from __future__ import annotations

import pytest
import torch

from fmnist.augment import MAX_CROP_PADDING, BatchAugment
from fmnist.errors import ConfigError

FILL = -0.81  # the normalised value of a black pixel, (0 - 0.2860) / 0.3530


def distinct_images(n: int, c: int = 1, h: int = 28, w: int = 28) -> torch.Tensor:
    """Images whose pixels are all different and none is 0 or FILL, so any move shows."""
    torch.manual_seed(1234)
    return torch.rand(n, c, h, w) + 1.0


def shifted(image: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """``image`` (C, H, W) seen through a window moved by (dy, dx).

    ``out[y, x] = image[y + dy, x + dx]``, and ``fill`` where that is off the image.
    """
    _, h, w = image.shape
    out = torch.full_like(image, fill)
    y0, y1 = max(0, -dy), min(h, h - dy)
    x0, x1 = max(0, -dx), min(w, w - dx)
    out[:, y0:y1, x0:x1] = image[:, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    return out


# -- flip -----------------------------------------------------------------------


def test_flip_mirrors_about_half_of_the_images_and_leaves_the_rest() -> None:
    images = distinct_images(2000)
    torch.manual_seed(0)
    out = BatchAugment(flip=True)(images)
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert (same ^ mirrored).all(), "every image is either untouched or exactly mirrored"
    assert 850 < int(mirrored.sum()) < 1150  # Binomial(2000, 0.5): sd 22


# -- crop -----------------------------------------------------------------------


@pytest.mark.parametrize("padding", [1, 2])
def test_crop_shifts_each_image_by_an_offset_within_the_padding(padding: int) -> None:
    images = distinct_images(400, c=3)
    torch.manual_seed(0)
    out = BatchAugment(crop_padding=padding, fill=FILL)(images)
    assert out.shape == images.shape

    offsets = [
        (dy, dx) for dy in range(-padding, padding + 1) for dx in range(-padding, padding + 1)
    ]
    found = []
    for image, result in zip(images, out, strict=True):
        matches = [o for o in offsets if torch.equal(result, shifted(image, *o, FILL))]
        assert len(matches) == 1, f"no offset within ±{padding} reproduces an image: {matches}"
        found.append(matches[0])
    # 400 draws from (2p+1)^2 <= 25 offsets: every offset, the extremes included, turns up.
    assert set(found) == set(offsets)


def test_crop_border_is_the_fill_value() -> None:
    images = distinct_images(64)
    torch.manual_seed(0)
    out = BatchAugment(crop_padding=3, fill=FILL)(images)
    # Any image moved off-centre shows some border, and the border is exactly FILL.
    moved = ~(out == images).flatten(1).all(1)
    assert moved.sum() > 50
    assert ((out == FILL) | (out >= 1.0)).all()
    assert (out[moved] == FILL).flatten(1).any(1).all()


# -- erasing --------------------------------------------------------------------


def erased_rectangles(out: torch.Tensor) -> list[tuple[int, int]]:
    """(height, width) of the zero rectangle in each single-channel image; fails if not one."""
    sizes = []
    for image in out[:, 0]:
        zero = image == 0
        rows = zero.any(1).nonzero().flatten()
        cols = zero.any(0).nonzero().flatten()
        assert len(rows) > 0, "an image was not erased"
        height = int(rows[-1] - rows[0] + 1)
        width = int(cols[-1] - cols[0] + 1)
        assert int(zero.sum()) == height * width, "the zeros do not form a filled rectangle"
        sizes.append((height, width))
    return sizes


def test_erasing_always_zeroes_one_rectangle_within_the_scale() -> None:
    images = distinct_images(300)
    torch.manual_seed(0)
    out = BatchAugment(erasing=1.0)(images)
    kept = out != 0
    assert torch.equal(out[kept], images[kept]), "pixels outside the rectangle are untouched"
    sizes = erased_rectangles(out)
    fractions = torch.tensor([h * w / (28 * 28) for h, w in sizes])
    assert fractions.min() >= 0.02 - 1e-6
    assert fractions.max() <= 0.25 + 1e-6
    assert fractions.max() - fractions.min() > 0.15, "areas are drawn, not fixed"
    assert any(h > w for h, w in sizes) and any(w > h for h, w in sizes)
    # Positions vary too, and reach every edge of the image.
    corners = {tuple(int(i) for i in (image[0] == 0).nonzero()[0]) for image in out}
    assert len(corners) > 50
    zero = out[:, 0] == 0
    for edge in (zero[:, 0, :], zero[:, -1, :], zero[:, :, 0], zero[:, :, -1]):
        assert edge.any(), "no rectangle touches one edge of the image"


def test_erasing_honours_custom_scale_and_ratio() -> None:
    images = distinct_images(200)
    torch.manual_seed(0)
    out = BatchAugment(erasing=1.0, erasing_scale=(0.3, 0.4), erasing_ratio=(2.0, 3.0))(images)
    for h, w in erased_rectangles(out):
        assert 0.3 <= h * w / (28 * 28) <= 0.4
        assert h > w  # ratio 2..3: always taller than wide, rounding notwithstanding


def test_erasing_probability_erases_about_that_share() -> None:
    images = distinct_images(1000)
    torch.manual_seed(0)
    out = BatchAugment(erasing=0.3)(images)
    erased = (out == 0).flatten(1).any(1)
    assert 240 < int(erased.sum()) < 360  # Binomial(1000, 0.3): sd 14.5


def test_erasing_zero_changes_nothing() -> None:
    images = distinct_images(50)
    out = BatchAugment(flip=False, crop_padding=0, erasing=0.0)(images)
    assert torch.equal(out, images)


# -- the module as a whole --------------------------------------------------------


def test_disabled_augment_returns_the_same_object() -> None:
    augment = BatchAugment()
    images = distinct_images(4)
    assert not augment.enabled
    assert augment(images) is images
    assert "disabled" in repr(augment)


def test_enabled_and_repr_name_only_what_is_on() -> None:
    assert BatchAugment(flip=True).enabled
    assert BatchAugment(crop_padding=1).enabled
    assert BatchAugment(erasing=0.1).enabled
    text = repr(BatchAugment(crop_padding=2, fill=FILL))
    assert "crop_padding=2" in text and f"fill={FILL}" in text
    assert "flip" not in text and "erasing" not in text


def test_same_seed_same_output_and_another_seed_differs() -> None:
    augment = BatchAugment(flip=True, crop_padding=2, erasing=0.5, fill=FILL)
    images = distinct_images(64)
    torch.manual_seed(7)
    first = augment(images)
    torch.manual_seed(7)
    again = augment(images)
    torch.manual_seed(8)
    other = augment(images)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_dtype_and_device_are_kept(dtype: torch.dtype) -> None:
    images = distinct_images(16, c=2, h=20, w=24).to(dtype)
    out = BatchAugment(flip=True, crop_padding=2, erasing=1.0, fill=FILL)(images)
    assert out.shape == images.shape
    assert out.dtype == dtype
    assert out.device == images.device
    assert (out == 0).flatten(1).any(1).all()


def test_empty_batch_passes() -> None:
    images = torch.empty(0, 1, 28, 28)
    out = BatchAugment(flip=True, crop_padding=2, erasing=1.0)(images)
    assert out.shape == images.shape


def test_rejects_images_that_are_not_a_float_batch() -> None:
    augment = BatchAugment(flip=True)
    with pytest.raises(ValueError, match="N, C, H, W"):
        augment(torch.zeros(28, 28))
    with pytest.raises(TypeError, match="float"):
        augment(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"flip": 1}, "data.augment.flip"),
        ({"flip": "yes"}, "data.augment.flip"),
        ({"crop_padding": -1}, "data.augment.crop_padding"),
        ({"crop_padding": MAX_CROP_PADDING + 1}, "data.augment.crop_padding"),
        ({"crop_padding": 2.5}, "data.augment.crop_padding"),
        ({"crop_padding": True}, "data.augment.crop_padding"),
        ({"erasing": -0.1}, "data.augment.erasing"),
        ({"erasing": 1.5}, "data.augment.erasing"),
        ({"erasing": float("nan")}, "data.augment.erasing"),
        ({"erasing": "half"}, "data.augment.erasing"),
        ({"erasing_scale": (0.3, 0.1)}, "data.augment.erasing_scale"),
        ({"erasing_scale": (0.0, 0.1)}, "data.augment.erasing_scale"),
        ({"erasing_scale": (0.1, 1.5)}, "data.augment.erasing_scale"),
        ({"erasing_scale": (0.1,)}, "data.augment.erasing_scale"),
        ({"erasing_ratio": (3.0, 0.3)}, "data.augment.erasing_ratio"),
        ({"erasing_ratio": (0.0, 1.0)}, "data.augment.erasing_ratio"),
        ({"erasing_ratio": "wide"}, "data.augment.erasing_ratio"),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        BatchAugment(**kwargs)


def test_accepts_the_limits_and_hydra_style_lists() -> None:
    BatchAugment(crop_padding=MAX_CROP_PADDING, erasing=1, erasing_scale=[0.1, 0.1])
    BatchAugment(crop_padding=0, erasing=0, erasing_ratio=[1, 1])
