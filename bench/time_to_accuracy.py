"""Wall time until a recipe's test accuracy first reaches 92%, 93%, 94%, ...

    python bench/time_to_accuracy.py experiment=fast
    python bench/time_to_accuracy.py experiment=best --targets 0.94 0.945 0.95
    python bench/time_to_accuracy.py experiment=fast trainer.accelerator=gpu data.on_device=true

Trains exactly what ``train.py`` builds from the same overrides and, for this
benchmark only, measures the test accuracy of the current weights after every
epoch (with the recipe's test-time averaging if it has one; ``--test-every``
spaces these tests out). The clock starts before the data is loaded and stops
for those extra test passes, so a time is what a run of that many epochs would
have taken; the recipe itself still selects its checkpoint on validation (the
last one when it has no validation split). Also printed: the share of the
training time the run's own validation and final test took, and the CPU time
other processes took meanwhile (this machine is shared: a figure taken while
others were busy is flagged).
Never run by pytest.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lightning as L
from cpu_steal import Window
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from fmnist.data import normalize
from fmnist.train import (
    apply_process_settings,
    build_experiment,
    checkpoint_to_test,
    route_lightning_logs_through_root,
    silence_known_warnings,
)
from fmnist.validate import check_config


class TestAccuracyClock(L.Callback):
    """After each training epoch: the test accuracy, and the run's time without these tests."""

    def __init__(self, started: float, every: int = 1) -> None:
        self.started = started
        self.every = every
        self.paused = 0.0  # seconds spent in this callback's own test passes
        self.validating = 0.0
        self.points: list[tuple[int, float, float]] = []  # (epoch, seconds, test accuracy)
        self._val_started = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started - self.paused

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_started = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validating += time.perf_counter() - self._val_started

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every and epoch != trainer.max_epochs:
            return
        seconds = self.elapsed()
        pause = time.perf_counter()
        accuracy = test_accuracy(trainer, pl_module)
        self.paused += time.perf_counter() - pause
        self.points.append((epoch, seconds, accuracy))
        print(f"  epoch {epoch}: {seconds:6.1f} s  test acc {accuracy:.4f}", flush=True)


@torch.no_grad()
def test_accuracy(trainer: L.Trainer, module) -> float:
    """Accuracy of the current weights on the 10,000 test images, as ``trainer.test`` has it."""
    datamodule = trainer.datamodule
    if datamodule.test_set is None:
        datamodule.setup("test")
    images, labels = datamodule.test_set.images, datamodule.test_set.labels
    was_training = module.training
    module.eval()
    correct = 0
    with trainer.precision_plugin.forward_context():
        for start in range(0, len(labels), datamodule.eval_batch_size):
            batch = normalize(images[start : start + datamodule.eval_batch_size].to(module.device))
            logits = module.eval_logits(batch)
            truth = labels[start : start + datamodule.eval_batch_size].to(module.device)
            correct += int((logits.argmax(dim=1) == truth).sum())
    module.train(was_training)
    return correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.92, 0.93, 0.94])
    parser.add_argument(
        "--test-every", type=int, default=1, help="test every this many epochs (and the last)"
    )
    parser.add_argument("--max-steal", type=float, default=0.15, help="cores others may use")
    args = parser.parse_args()

    route_lightning_logs_through_root()
    silence_known_warnings()
    warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers).*")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg: DictConfig = compose("config", overrides=["output_dir=unused", *args.overrides])
    check_config(cfg)
    reused = apply_process_settings(cfg)
    overrides = " ".join(args.overrides) or "none"
    print(
        f"overrides: {overrides}; torch threads {torch.get_num_threads()}; "
        f"freed memory reused: {'yes' if reused else 'no'}"
    )

    with tempfile.TemporaryDirectory() as out, Window() as window:
        OmegaConf.update(cfg, "output_dir", out)
        OmegaConf.update(cfg, "callbacks.progress_bar", None, force_add=True)
        started = time.perf_counter()
        if cfg.seed is not None:
            L.seed_everything(cfg.seed, verbose=False)
        datamodule, module, trainer = build_experiment(cfg)
        clock = TestAccuracyClock(started, args.test_every)
        trainer.callbacks.append(clock)
        trainer.fit(module, datamodule=datamodule)
        fit_seconds = clock.elapsed()
        tested = checkpoint_to_test(trainer)
        trainer.test(module, datamodule=datamodule, ckpt_path=tested, verbose=False)
        run_seconds = clock.elapsed()
        final = float(trainer.callback_metrics["test/acc"])

    print()
    print("| test accuracy | first reached after | epoch |")
    print("|---:|---:|---:|")
    for target in args.targets:
        hit = next(((e, s) for e, s, acc in clock.points if acc >= target), None)
        when = f"{hit[1]:.0f} s | {hit[0]}" if hit else "not reached | -"
        print(f"| {target:.1%} | {when} |")
    print()
    print(f"training + validation: {fit_seconds:.0f} s; with the final test: {run_seconds:.0f} s")
    which = "best validation" if trainer.datamodule.has_validation else "last"
    print(f"final test accuracy ({which} checkpoint, as train.py reports): {final:.4f}")
    training = fit_seconds - clock.validating
    share = clock.validating / training
    print(f"validation took {clock.validating:.1f} s = {share:.1%} of the training time")
    testing = run_seconds - fit_seconds
    print(f"the final test took {testing:.1f} s = {testing / training:.1%} of the training time")
    flag = "  <- polluted: rerun on a quiet machine" if window.others_cores > args.max_steal else ""
    print(f"other processes used {window.others_cores:.2f} cores on average meanwhile{flag}")


if __name__ == "__main__":
    main()
