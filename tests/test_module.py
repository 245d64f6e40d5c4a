"""The LightningModule: steps, metrics, optimisers, schedules, checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from fmnist import CLASS_NAMES
from fmnist.data import FashionMNISTDataModule
from fmnist.errors import ConfigError
from fmnist.metrics import TrainingTally
from fmnist.models import CNN
from fmnist.module import LitClassifier, class_tag
from fmnist.optim import build_optimizer, build_scheduler


def small_datamodule(folder: Path, **kwargs) -> FashionMNISTDataModule:
    return FashionMNISTDataModule(
        data_dir=folder,
        system_dir=None,
        download=False,
        verify_digest=False,
        batch_size=64,
        **kwargs,
    )


def quiet_trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        **kwargs,
    )


def test_train_val_test_steps_learn_and_report(synthetic_dir: Path, tmp_path: Path) -> None:
    L.seed_everything(0, verbose=False)
    module = LitClassifier(model={"name": "cnn", "channels": [8, 16], "hidden": 32})
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=30,
        limit_val_batches=2,
        limit_test_batches=2,
        enable_checkpointing=False,
    )
    dm = small_datamodule(synthetic_dir)
    trainer.fit(module, datamodule=dm)
    metrics = trainer.callback_metrics
    for key in (
        "train/loss",
        "train/loss_epoch",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/acc_best",
    ):
        assert key in metrics, key
    assert float(metrics["val/acc"]) > 0.5  # synthetic classes are easy; chance is 0.1
    assert float(metrics["val/acc_best"]) == float(metrics["val/acc"])

    trainer.test(module, datamodule=dm, verbose=False)
    metrics = trainer.callback_metrics
    assert 0.5 < float(metrics["test/acc"]) <= 1.0
    per_class = [float(metrics[f"test/acc_class/{class_tag(n)}"]) for n in CLASS_NAMES]
    assert len(per_class) == 10 and all(0.0 <= a <= 1.0 for a in per_class)


def test_best_validation_accuracy_ignores_the_sanity_check(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    module = LitClassifier(model={"name": "mlp", "hidden": [16]})
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=2,
        num_sanity_val_steps=2,
        enable_checkpointing=False,
    )
    trainer.fit(module, datamodule=small_datamodule(synthetic_dir))
    assert int(module.val_acc_best._update_count) == 1  # one real validation, not the sanity one


def test_checkpoint_rebuilds_the_network_alone(synthetic_dir: Path, tmp_path: Path) -> None:
    model_cfg = {"name": "cnn", "channels": [4, 8, 16], "kernel_size": [5, 3, 3], "hidden": 16}
    module = LitClassifier(model=model_cfg, optimizer={"name": "sgd", "lr": 0.1})
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(module, datamodule=small_datamodule(synthetic_dir))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    loaded = LitClassifier.load_from_checkpoint(path, weights_only=True)  # no config
    assert isinstance(loaded.net, CNN)
    assert loaded.hparams.model == model_cfg
    x = torch.randn(2, 1, 28, 28)
    module.eval(), loaded.eval()
    assert torch.equal(module(x), loaded(x))


@pytest.mark.parametrize(
    ("name", "cls"),
    [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)],
)
def test_optimizers_by_name(name: str, cls: type) -> None:
    opt = build_optimizer(CNN(channels=[4]).parameters(), name=name, lr=0.01)
    assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.01


def test_bad_optimizer_settings() -> None:
    params = list(CNN(channels=[4]).parameters())
    with pytest.raises(
        ConfigError, match=r"optimizer.name='adagrad' is unknown.*\['adam', 'adamw', 'sgd'\]"
    ):
        build_optimizer(params, name="adagrad")
    with pytest.raises(ConfigError, match="optimizer.lr=0 must be positive"):
        build_optimizer(params, lr=0)


def _lrs(name: str, steps: int = 100, **kwargs) -> list[float]:
    opt = build_optimizer(CNN(channels=[4]).parameters(), lr=0.1)
    sched = build_scheduler(opt, total_steps=steps, steps_per_epoch=10, name=name, **kwargs)[
        "scheduler"
    ]
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_schedules() -> None:
    cosine = _lrs("cosine")
    assert cosine[0] == pytest.approx(0.1) and cosine[-1] < 0.001
    onecycle = _lrs("onecycle", warmup_fraction=0.3)
    peak = max(range(100), key=onecycle.__getitem__)
    assert (
        25 <= peak <= 31 and onecycle[peak] == pytest.approx(0.1, rel=0.01) and onecycle[-1] < 0.001
    )
    step = _lrs("step", step_epochs=3, gamma=0.5)
    assert step[29] == pytest.approx(0.1) and step[30] == pytest.approx(0.05)
    opt = build_optimizer(CNN(channels=[4]).parameters())
    assert build_scheduler(opt, 10, 1, name="none") is None
    with pytest.raises(ConfigError, match="scheduler.name='warm' is unknown"):
        build_scheduler(opt, 10, 1, name="warm")


def test_scheduler_steps_during_training(synthetic_dir: Path, tmp_path: Path) -> None:
    module = LitClassifier(
        model={"name": "mlp", "hidden": [16]},
        optimizer={"name": "sgd", "lr": 0.1},
        scheduler={"name": "cosine"},
    )
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=2,
        limit_train_batches=5,
        limit_val_batches=1,
        enable_checkpointing=False,
    )
    trainer.fit(module, datamodule=small_datamodule(synthetic_dir))
    assert trainer.global_step == 10
    assert trainer.optimizers[0].param_groups[0]["lr"] < 1e-3  # decayed to ~0 over the 10 updates


def test_training_tally_matches_torchmetrics_accuracy_and_the_mean_loss_per_image() -> None:
    generator = torch.Generator().manual_seed(0)
    tally, reference = TrainingTally(), MulticlassAccuracy(10, average="micro")
    losses, sizes = [], []
    for size in (64, 64, 17):  # a short last batch weighs less in the mean loss
        preds = torch.randint(0, 10, (size,), generator=generator)
        target = torch.randint(0, 10, (size,), generator=generator)
        loss = torch.rand((), generator=generator)
        tally.update(preds, target, loss)
        reference.update(preds, target)
        losses.append(float(loss))
        sizes.append(size)
    epoch = tally.compute()
    assert float(epoch["acc"]) == pytest.approx(float(reference.compute()))
    expected_loss = sum(x * n for x, n in zip(losses, sizes, strict=True)) / sum(sizes)
    assert float(epoch["loss"]) == pytest.approx(expected_loss)
    tally.reset()
    assert int(tally.seen) == 0 and int(tally.correct) == 0
