"""Training throughput of the project's path against a raw PyTorch loop and a tutorial pipeline.

    python bench/throughput.py --quick                       # under a minute on 2 cores
    python bench/throughput.py                               # the default model and options
    python bench/throughput.py trainer.precision=bf16-mixed model.channels_last=true
    python bench/throughput.py --device cuda data.on_device=true   # unchanged on a GPU
    python bench/throughput.py --quick --calls               # + Python calls per update

Three ways to train the same model (same batch size, device, precision,
memory format, optimizer) are timed in one process, in turn, ``--repeats``
times (the order rotates each round):

1. raw: a hand-written loop over pre-loaded, pre-normalised tensors, the
   practical limit;
2. project: the project's own path, exactly what ``train.py`` builds from the
   config (DataModule, LightningModule, Trainer with the default callbacks and
   TensorBoard logging);
3. naive: what a tutorial writes: torchvision's ``FashionMNIST`` with
   ``ToTensor`` + ``Normalize`` and a ``DataLoader(shuffle=True)``.

Each timing covers ``--steps`` optimizer updates after ``--warmup`` updates.
A timing during which other processes used more than ``--max-steal`` cores is
repeated (see ``cpu_steal.py``). Printed: images per second (median of the
rounds), the ratios project/raw and project/naive (median of the per-round
ratios), the device, the options and the peak memory; with ``--calls``, also
the Python function calls per update of the raw loop and the project path, by
package (where the project path's extra time per update goes). Process-wide
settings (torch threads, ``reuse_freed_memory``) are applied as ``train.py``
applies them and hold for all three paths. Never run by pytest.
Extra arguments are Hydra overrides of the run config, as for ``train.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gzip
import logging
import shutil
import statistics
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lightning as L
from cpu_steal import Window
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from fmnist.data import MEAN, STD, FashionMNISTDataModule, normalize
from fmnist.models import build_model
from fmnist.optim import build_optimizer
from fmnist.train import (
    apply_process_settings,
    build_experiment,
    route_lightning_logs_through_root,
    silence_known_warnings,
)
from fmnist.validate import check_config

PATHS = ("raw", "project", "naive")


class CallCountingWindow(Window):
    """A timing window that also counts the Python function calls made in it."""

    def start(self) -> None:
        self.profiler = cProfile.Profile()
        super().start()
        self.profiler.enable()

    def stop(self) -> None:
        self.profiler.disable()
        super().stop()

    def calls_by_package(self) -> Counter[str]:
        """Calls per installed package (``lightning``, ``torch``...), ``fmnist``, or ``python``."""
        calls: Counter[str] = Counter()
        self.profiler.create_stats()
        for (filename, _, _), (_, count, *_) in self.profiler.stats.items():
            parts = Path(filename).parts
            if "site-packages" in parts:
                package = parts[parts.index("site-packages") + 1]
            elif filename.startswith(str(ROOT)):
                package = Path(filename).relative_to(ROOT).parts[0]
            else:  # builtins (isinstance, getattr, ...) and the standard library
                package = "python"
            calls[package] += count
        return calls


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast a hand-written loop would use for Lightning's ``precision`` setting."""
    if precision in ("32-true", "32"):
        return contextlib.nullcontext()
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return torch.autocast(device.type, dtype=torch.float16)
    raise SystemExit(f"error: trainer.precision={precision} is not covered by this benchmark")


class HandLoop:
    """The model, optimizer and loss step shared by the raw and the naive loop."""

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        torch.manual_seed(cfg.seed)
        self.device = device
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        self.channels_last = bool(model_cfg.get("channels_last"))
        self.model = build_model(**model_cfg).to(device)
        self.optimizer = build_optimizer(
            self.model.parameters(),
            **OmegaConf.to_container(cfg.optimizer, resolve=True),
            batch_size=cfg.data.batch_size,
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.module.label_smoothing)
        self.precision = str(cfg.trainer.precision)
        self.scaler = torch.amp.GradScaler(enabled=self.precision == "16-mixed")

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            loss = self.criterion(self.model(images), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def time(
        self,
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
        warmup: int,
        steps: int,
        window_type: type[Window] = Window,
    ) -> Window:
        window = window_type()
        for step in range(warmup + steps):
            if step == warmup:
                synchronize(self.device)
                window.start()
            images, labels = next(batches)
            self.step(images.to(self.device), labels.to(self.device))
        synchronize(self.device)
        window.stop()
        return window


def raw_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches cut from tensors already on the device and normalised: no loader."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    while True:
        order = torch.randperm(len(labels), device=images.device, generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield images.index_select(0, index), labels.index_select(0, index)


def time_raw(
    cfg: DictConfig, data: dict, warmup: int, steps: int, window_type: type[Window] = Window
) -> Window:
    loop = HandLoop(cfg, data["device"])
    batches = raw_batches(data["images"], data["labels"], cfg.data.batch_size, cfg.seed)
    return loop.time(batches, warmup, steps, window_type)


def time_naive(cfg: DictConfig, data: dict, warmup: int, steps: int) -> Window:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    dataset = datasets.FashionMNIST(data["torchvision_root"], train=True, transform=transform)
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=True, drop_last=True)

    def forever() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield from loader

    return HandLoop(cfg, data["device"]).time(forever(), warmup, steps)


class WindowTimer(L.Callback):
    """Times training batches ``warmup`` .. ``warmup + steps - 1`` inside Lightning's loop."""

    def __init__(self, warmup: int, steps: int, window_type: type[Window] = Window) -> None:
        self.warmup, self.steps = warmup, steps
        self.window = window_type()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            synchronize(pl_module.device)
            self.window.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.warmup + self.steps - 1:
            synchronize(pl_module.device)
            self.window.stop()


def time_project(
    cfg: DictConfig, data: dict, warmup: int, steps: int, window_type: type[Window] = Window
) -> Window:
    run_cfg = cfg.copy()
    OmegaConf.update(run_cfg, "trainer.limit_train_batches", warmup + steps)
    OmegaConf.update(run_cfg, "trainer.max_epochs", 1)
    OmegaConf.update(run_cfg, "trainer.limit_val_batches", 2)  # after the timed steps
    with tempfile.TemporaryDirectory() as out:
        OmegaConf.update(run_cfg, "output_dir", out)
        L.seed_everything(cfg.seed, verbose=False)
        datamodule, module, trainer = build_experiment(run_cfg)
        timer = WindowTimer(warmup, steps, window_type)
        trainer.callbacks.append(timer)
        trainer.fit(module, datamodule=datamodule)
    if timer.window.seconds == 0:  # the epoch ended before the window did
        sys.exit(
            f"an epoch has {trainer.num_training_batches} batches, fewer than the "
            f"{warmup + steps} warm-up and timed updates asked for: use fewer --steps"
        )
    return timer.window


def load_data(cfg: DictConfig, device: torch.device, tmp: Path) -> dict:
    """The training split on the device for the raw loop; torchvision's layout for the naive one."""
    options = {k: v for k, v in cfg.data.items() if k not in ("_target_", "augment", "on_device")}
    datamodule = FashionMNISTDataModule(**options)
    datamodule.setup("fit")
    train = datamodule.train_set
    root = tmp / "torchvision"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, path in datamodule.located.files.items():
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return {
        "device": device,
        "images": normalize(train.images).to(device),
        "labels": train.labels.to(device),
        "torchvision_root": str(root),
    }


def measure(
    name: str, fn: Callable[..., Window], args: argparse.Namespace, *fn_args
) -> tuple[Window, int]:
    """Time ``fn``, again while others stole more than ``--max-steal`` cores (up to --retries)."""
    for attempt in range(args.retries + 1):
        window = fn(*fn_args, args.warmup, args.steps)
        if window.others_cores <= args.max_steal:
            return window, attempt
        print(
            f"  {name}: other processes used {window.others_cores:.2f} cores, timing again",
            flush=True,
        )
    return window, args.retries


def compose_config(overrides: list[str], device: str) -> DictConfig:
    accelerator = {"cpu": "cpu", "cuda": "gpu"}[device]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"trainer.accelerator={accelerator}",
                "output_dir=unused",
                # The layer table is printed once, before any timing: keep the output short.
                "callbacks.model_summary=null",
                *overrides,
            ],
        )
    check_config(cfg)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 50 steps")
    parser.add_argument("--repeats", type=int, default=7, help="rounds of the three paths")
    parser.add_argument("--steps", type=int, default=150, help="timed updates per path and round")
    parser.add_argument("--warmup", type=int, default=20, help="untimed updates first")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--max-steal", type=float, default=0.15, help="cores others may use")
    parser.add_argument("--retries", type=int, default=3, help="re-timings of a polluted round")
    parser.add_argument(
        "--calls", action="store_true", help="also count Python calls per update, by package"
    )
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps, args.warmup = 3, 50, 10
    device_name = args.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)

    route_lightning_logs_through_root()
    silence_known_warnings()
    warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers).*")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    cfg = compose_config(args.overrides, device_name)
    # Process-wide, as in train.py: all three paths run under the same settings.
    reused = apply_process_settings(cfg)
    images_per_round = args.steps * cfg.data.batch_size
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device: {what}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}, "
        f"freed memory reused: {'yes' if reused else 'no'}"
    )
    print(
        f"options: model={cfg.model.name} batch_size={cfg.data.batch_size} "
        f"precision={cfg.trainer.precision} channels_last={cfg.model.channels_last} "
        f"compile={cfg.model.compile} optimizer={cfg.optimizer.name} "
        f"fused={cfg.optimizer.fused} on_device={cfg.data.on_device} "
        f"overrides={args.overrides or 'none'}"
    )
    print(
        f"{args.repeats} rounds x {args.steps} timed updates ({images_per_round:,} images) "
        f"after {args.warmup} warm-up updates, per path"
    )

    timers = {"raw": time_raw, "project": time_project, "naive": time_naive}
    rates: dict[str, list[float]] = {name: [] for name in PATHS}
    peak_gpu: dict[str, float] = {}
    retimed = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = load_data(cfg, device, Path(tmp))
        # One untimed pass over every path first: one-time costs (kernel selection,
        # allocator growth, lazy imports) otherwise land in the first round.
        for name in PATHS:
            timers[name](cfg, data, args.warmup, min(args.steps, 20))
        calls = {}
        if args.calls:  # a separate, untimed pass: profiling slows every call down
            for name, timer in (("raw", time_raw), ("project", time_project)):
                window = timer(cfg, data, args.warmup, args.steps, CallCountingWindow)
                calls[name] = window.calls_by_package()
        for round_ in range(args.repeats):
            order = PATHS[round_ % 3 :] + PATHS[: round_ % 3]
            for name in order:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                window, again = measure(name, timers[name], args, cfg, data)
                retimed += again
                rates[name].append(images_per_round / window.seconds)
                if device.type == "cuda":
                    peak_gpu[name] = max(
                        peak_gpu.get(name, 0.0), torch.cuda.max_memory_allocated(device) / 2**20
                    )
            line = ", ".join(f"{n} {rates[n][-1]:,.0f}" for n in PATHS)
            print(f"round {round_ + 1}: images/s {line}", flush=True)

    def median_ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True))

    print()
    print("| path | images/s (median) | peak GPU memory |")
    print("|---|---:|---:|")
    for name in PATHS:
        gpu = f"{peak_gpu[name]:,.0f} MB" if name in peak_gpu else "-"
        print(f"| {name} | {statistics.median(rates[name]):,.0f} | {gpu} |")
    print()
    print(f"project / raw:   {median_ratio('project', 'raw'):.2f}  (median of per-round ratios)")
    print(f"project / naive: {median_ratio('project', 'naive'):.2f}")
    from fmnist.train import peak_memory_mb

    print(f"peak resident memory of this process: {peak_memory_mb()['rss_mb']:,.0f} MB")
    print(f"timings repeated because other processes used the CPU: {retimed}")
    for name, by_package in calls.items():
        total = sum(by_package.values()) / args.steps
        per_update = {k: v / args.steps for k, v in by_package.most_common()}
        # Packages called less than once per update are left out of the breakdown only.
        parts = ", ".join(f"{k} {v:,.0f}" for k, v in per_update.items() if v >= 0.5)
        print(f"Python calls per update, {name}: {total:,.0f} ({parts})")


if __name__ == "__main__":
    main()
