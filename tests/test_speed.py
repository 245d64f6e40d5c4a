"""The speed switches: each trains a few batches on the CPU, and does what it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fmnist.data import BLACK, DeviceBatches, FashionMNISTDataModule
from fmnist.errors import ConfigError
from fmnist.models import build_model
from fmnist.module import LitClassifier
from fmnist.optim import build_optimizer, scaled_lr
from fmnist.train import hparams_of, run
from fmnist.validate import check_checkpoint_matches, check_config

SWITCHES = {
    "bf16": ["trainer.precision=bf16-mixed"],
    "channels_last": ["model.channels_last=true"],
    "fused_adam": ["optimizer.fused=true"],
    "foreach_sgd": ["optimizer=sgd", "optimizer.foreach=true"],
    "scaled_lr": ["data.batch_size=256", "optimizer.lr_scaling=sqrt"],
    "on_device": ["data.on_device=true"],
    "augment": [
        "data.augment.flip=true",
        "data.augment.crop_padding=2",
        "data.augment.erasing=0.5",
    ],
    "label_smoothing_tta": [
        "module.label_smoothing=0.1",
        "module.tta_flip=true",
        "module.tta_shift=1",
    ],
    "bf16_channels_last_on_device": [
        "trainer.precision=bf16-mixed",
        "model.channels_last=true",
        "data.on_device=true",
    ],
    "pool_first": ["model.batch_norm=true", "model.pool_first=true"],
    "experiment_fast": ["experiment=fast"],
    "experiment_best": ["experiment=best"],
}


def metrics_of(cfg) -> dict:
    return json.loads((Path(cfg.output_dir) / "metrics.json").read_text())


@pytest.mark.parametrize("name", list(SWITCHES))
def test_switch_trains_and_tests(make_cfg, name: str) -> None:
    cfg = make_cfg(*SWITCHES[name], "trainer.limit_train_batches=4", "callbacks.pictures=null")
    run(cfg)
    metrics = metrics_of(cfg)
    assert metrics["global_step"] == 4
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert torch.isfinite(torch.tensor(metrics["test/loss"]))
    assert metrics["peak_memory"]["rss_mb"] > 0


@pytest.mark.slow
def test_compiled_model_trains(make_cfg) -> None:
    cfg = make_cfg(
        "model.compile=true",
        "trainer.limit_train_batches=3",
        "callbacks.pictures=null",
        "logger.tensorboard.log_graph=false",
    )
    run(cfg)
    assert metrics_of(cfg)["global_step"] == 3


def test_channels_last_stores_conv_weights_nhwc() -> None:
    model = build_model("cnn", channels_last=True)
    weight = model.features[1][0].weight  # Conv2d(32, 64, 3): 32 input channels
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()


def test_lr_scaling_follows_the_global_batch() -> None:
    assert scaled_lr(1e-3, 128, 64, "linear") == pytest.approx(2e-3)
    assert scaled_lr(1e-3, 256, 64, "sqrt") == pytest.approx(2e-3)
    assert scaled_lr(1e-3, 256, 64, "none") == pytest.approx(1e-3)
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = build_optimizer(params, lr=1e-3, lr_scaling="linear", batch_size=32)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    with pytest.raises(ConfigError, match="optimizer.lr_scaling"):
        scaled_lr(1e-3, 128, 64, "cubic")
    with pytest.raises(ConfigError, match="fused and optimizer.foreach"):
        build_optimizer(params, fused=True, foreach=True)


def test_run_scales_lr_by_its_batch(make_cfg) -> None:
    cfg = make_cfg("data.batch_size=256", "optimizer.lr_scaling=linear", "callbacks.pictures=null")
    run(cfg)
    assert metrics_of(cfg)["train/lr"] == pytest.approx(4e-3)  # 1e-3 tuned at batch 64


def test_on_device_batches_match_the_loader(synthetic_dir: Path) -> None:
    def batches(on_device: bool) -> list[torch.Tensor]:
        dm = FashionMNISTDataModule(
            data_dir=synthetic_dir, system_dir=None, download=False, verify_digest=False,
            batch_size=500, on_device=on_device,
        )  # fmt: skip
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert isinstance(loader, DeviceBatches if on_device else DataLoader)
        loader.sampler.set_epoch(3)
        return [labels for _, labels in loader]

    on_device, in_loader = batches(True), batches(False)
    assert len(on_device) == len(in_loader) == 110
    assert all(torch.equal(a, b) for a, b in zip(on_device, in_loader, strict=True))


def test_augmentation_only_touches_training_batches(synthetic_dir: Path) -> None:
    dm = FashionMNISTDataModule(
        data_dir=synthetic_dir, system_dir=None, download=False, verify_digest=False,
        augment={"flip": True, "crop_padding": 3},
    )  # fmt: skip

    class Stage:
        training = True

    dm.trainer = Stage()
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    labels = torch.zeros(64, dtype=torch.long)
    augmented, _ = dm.on_after_batch_transfer((images, labels), 0)
    Stage.training = False
    plain, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert not torch.equal(augmented, plain)
    torch.testing.assert_close(plain, (images.float() / 255 - 0.2860) / 0.3530)


def test_bad_augment_option_is_refused(make_cfg) -> None:
    with pytest.raises(ConfigError, match="data.augment"):
        check_config(make_cfg("+data.augment.rotate=15"))
    with pytest.raises(ConfigError, match="data.augment.crop_padding"):
        check_config(make_cfg("data.augment.crop_padding=20"))


def test_checkpoint_from_before_a_model_setting_existed_still_matches(make_cfg) -> None:
    # A checkpoint written before model.pool_first existed has no such key: it was the default.
    cfg = make_cfg()
    trained = {"hyper_parameters": {"model": dict(cfg.model)}}
    del trained["hyper_parameters"]["model"]["pool_first"]
    check_checkpoint_matches(trained, cfg, Path("x.ckpt"))  # no error
    with pytest.raises(ConfigError, match="model.pool_first=False in the checkpoint, True now"):
        check_checkpoint_matches(trained, make_cfg("model.pool_first=true"), Path("x.ckpt"))


def test_runtime_options_do_not_block_a_resume(make_cfg) -> None:
    cfg = make_cfg("model.channels_last=true", "model.compile=true")
    trained = {"hyper_parameters": {"model": {**cfg.model, "channels_last": False}}}
    trained["hyper_parameters"]["model"]["compile"] = False
    check_checkpoint_matches(trained, cfg, Path("x.ckpt"))  # no error
    trained["hyper_parameters"]["model"]["channels"] = [8, 16]
    with pytest.raises(ConfigError, match="model.channels"):
        check_checkpoint_matches(trained, cfg, Path("x.ckpt"))


def test_tta_flip_averages_the_mirror_image() -> None:
    module = LitClassifier(model={"name": "mlp", "hidden": [8]}, tta_flip=True).eval()
    images = torch.randn(3, 1, 28, 28)
    expected = (module(images) + module(images.flip(-1))) / 2
    assert torch.allclose(module.eval_logits(images), expected)


def shifted_by_hand(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Pixel (i, j) of the view is pixel (i + dy, j + dx) of the image, black outside it."""
    view = torch.full_like(images, BLACK)
    h, w = images.shape[-2:]
    for i in range(h):
        for j in range(w):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                view[..., i, j] = images[..., i + dy, j + dx]
    return view


@pytest.mark.parametrize("flip", [False, True])
def test_tta_shift_averages_every_shifted_view(flip: bool) -> None:
    module = LitClassifier(model={"name": "mlp", "hidden": [8]}, tta_flip=flip, tta_shift=1).eval()
    images = torch.randn(3, 1, 28, 28)
    offsets = [(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)]
    views = [shifted_by_hand(images, dy, dx) for dy, dx in offsets]
    if flip:
        views += [view.flip(-1) for view in views]
    expected = torch.stack([module(view) for view in views]).mean(dim=0)
    assert torch.allclose(module.eval_logits(images), expected, atol=1e-5)
    # Shifting changes the prediction: the views are not all the same image.
    assert not torch.allclose(module.eval_logits(images), module(images), atol=1e-4)


@pytest.mark.parametrize("shift", [-1, 9, 1.5, True])
def test_bad_tta_shift_is_refused(shift) -> None:
    with pytest.raises(ConfigError, match="module.tta_shift"):
        LitClassifier(model={"name": "mlp", "hidden": [8]}, tta_shift=shift)


def test_hparams_flatten_nested_options(make_cfg) -> None:
    flat = hparams_of(make_cfg("data.augment.flip=true", "module.tta_flip=true"))
    assert flat["data.augment.flip"] is True and flat["module.tta_flip"] is True


def test_lean_logging_still_writes_every_epoch(make_cfg) -> None:
    """Loss and lr written on the logging steps, as Lightning would; epoch means every epoch."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg(
        "trainer.log_every_n_steps=5",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=12",
        "callbacks.pictures=null",
    )
    run(cfg)
    events = EventAccumulator(str(Path(cfg.output_dir) / "tensorboard"))
    events.Reload()
    steps = {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert len(steps["train/acc"]) == len(steps["train/loss_epoch"]) == 2
    # Every 5th update counted across epochs: global steps 4, 9, 14 and 19 of 0-23.
    assert steps["train/loss"] == [4, 9, 14, 19]
    assert steps["train/lr"] == steps["train/loss"]
