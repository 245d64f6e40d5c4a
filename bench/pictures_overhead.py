"""How much the TensorBoard pictures cost: training with them on versus off.

    python bench/pictures_overhead.py            # 3 pairs of 2-epoch runs on all 55,000 images
    python bench/pictures_overhead.py --pairs 5 --images 20000

Two measurements. Directly: the time spent inside the pictures callback's
hooks, as a share of training time (not disturbed by other load on the
machine). Side by side: runs with pictures off and on, in alternating order
(off/on, then on/off, ...) so a slow spell or a drift hits both sides; the
figures are medians of the per-pair ratios of training time (``fit_time_s``)
and of the whole run (with the test and its figures). Never run by pytest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from fmnist.pictures import TensorBoardPictures
from fmnist.train import run

HOOK_SECONDS = {"train": 0.0, "test": 0.0}
TRAIN_HOOKS = ("on_train_start", "on_train_epoch_end")
TEST_HOOKS = ("on_test_epoch_start", "on_test_batch_end", "on_test_end")


def _timed(name: str, phase: str):
    original = getattr(TensorBoardPictures, name)

    def hook(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            HOOK_SECONDS[phase] += time.perf_counter() - start

    setattr(TensorBoardPictures, name, hook)


for _name in TRAIN_HOOKS:
    _timed(_name, "train")
for _name in TEST_HOOKS:
    _timed(_name, "test")

CONF = Path(__file__).resolve().parents[1] / "conf"


def timed_run(pictures: bool, images: int, epochs: int) -> tuple[float, float]:
    """(training seconds, whole-run seconds) of one run."""
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(str(CONF), version_base="1.3"):
        overrides = [
            f"data.train_subset={images}",
            f"trainer.max_epochs={epochs}",
            "trainer.accelerator=cpu",
            "callbacks.progress_bar=null",
            "callbacks.model_summary=null",
            "trainer.enable_model_summary=false",
            f"output_dir={out}",
        ]
        if not pictures:
            overrides.append("callbacks.pictures=null")
        cfg = compose("config", overrides=overrides)
        run(cfg)
        metrics = json.loads((Path(out) / "metrics.json").read_text())
        return metrics["fit_time_s"], metrics["wall_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--images", type=int, default=55_000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    timed_run(False, 2_000, 1)  # warm-up: imports, file cache, allocator
    fit_ratios, run_ratios, fit_off, shares = [], [], [], []
    for pair in range(args.pairs):
        order = (False, True) if pair % 2 == 0 else (True, False)
        times = {}
        for pictures in order:
            HOOK_SECONDS.update(train=0.0, test=0.0)
            times[pictures] = timed_run(pictures, args.images, args.epochs)
            if pictures:
                shares.append((HOOK_SECONDS["train"] / times[True][0], HOOK_SECONDS["test"]))
        fit_off.append(times[False][0])
        fit_ratios.append(times[True][0] / times[False][0])
        run_ratios.append(times[True][1] / times[False][1])
    print(f"{args.pairs} pairs, {args.epochs} epochs of {args.images:,} images each, "
          f"training without pictures: median {statistics.median(fit_off):.1f} s")  # fmt: skip
    train_share = statistics.median(s for s, _ in shares)
    test_seconds = statistics.median(t for _, t in shares)
    print(
        f"inside the pictures callback during training: median {train_share:.2%} of the "
        f"training time; drawing the test figures: median {test_seconds:.2f} s per run"
    )
    print(f"training, pictures on / off: median ratio {statistics.median(fit_ratios):.3f} "
          f"({', '.join(f'{r:.3f}' for r in fit_ratios)})")  # fmt: skip
    print(
        f"whole run (with test figures), on / off: median ratio "
        f"{statistics.median(run_ratios):.3f} ({', '.join(f'{r:.3f}' for r in run_ratios)})"
    )


if __name__ == "__main__":
    main()
