"""What each speed switch does to the project's training throughput, measured side by side.

    python bench/options.py                 # 3 rounds on this machine's default device
    python bench/options.py --rounds 5 --steps 200
    python bench/options.py experiment=best --only model.pool_first=true   # on top of a recipe

Times the project's own training path (as ``bench/throughput.py`` does) under
the default options and under each switch, in rotation, for several rounds,
and prints each switch's images per second as a ratio to the default's in the
same round (median over rounds). Extra arguments are Hydra overrides applied
under every switch (the "default" is then that setup); ``--only`` keeps the
switches named. Larger batches are compared per image, and
with ``optimizer.lr_scaling=sqrt`` so that they train comparably. Never run by
pytest.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import compose_config, load_data, measure, time_project

from fmnist.train import (
    apply_process_settings,
    route_lightning_logs_through_root,
    silence_known_warnings,
)

SWITCHES: dict[str, list[str]] = {
    "default (fp32, NCHW, batch 64)": [],
    "model.channels_last=true": ["model.channels_last=true"],
    "trainer.precision=bf16-mixed": ["trainer.precision=bf16-mixed"],
    "bf16-mixed + channels_last": ["trainer.precision=bf16-mixed", "model.channels_last=true"],
    "optimizer.fused=true": ["optimizer.fused=true"],
    "data.on_device=true": ["data.on_device=true"],
    "data.batch_size=256 (lr_scaling=sqrt)": ["data.batch_size=256", "optimizer.lr_scaling=sqrt"],
    "model.compile=true": ["model.compile=true", "logger.tensorboard.log_graph=false"],
    "model.pool_first=true": ["model.pool_first=true"],
}
BASELINE = next(iter(SWITCHES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides under every switch")
    parser.add_argument("--only", nargs="+", choices=list(SWITCHES)[1:], help="switches to time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="timed updates at batch 64")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--max-steal", type=float, default=0.15, help="cores others may use")
    parser.add_argument("--retries", type=int, default=3)
    args = parser.parse_args()
    device_name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    route_lightning_logs_through_root()
    silence_known_warnings()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("torch").setLevel(logging.ERROR)

    names = [BASELINE, *(args.only or list(SWITCHES)[1:])]
    configs = {n: compose_config([*args.overrides, *SWITCHES[n]], device_name) for n in names}
    apply_process_settings(configs[BASELINE])  # process-wide, as in train.py
    print(f"device: {device_name}, torch threads: {torch.get_num_threads()}")
    print(f"under every switch: {' '.join(args.overrides) or 'nothing'}")
    rates: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        data = load_data(configs[BASELINE], torch.device(device_name), Path(tmp))
        for cfg in configs.values():  # untimed: compile caches, kernel choices, imports
            time_project(cfg, data, args.warmup, 10)
        for round_ in range(args.rounds):
            for name, cfg in configs.items():
                # The same number of images for every switch: fewer steps at larger batches.
                steps = max(10, args.steps * 64 // cfg.data.batch_size)
                timing = argparse.Namespace(**{**vars(args), "steps": steps})
                window, _ = measure(name, time_project, timing, cfg, data)
                rates[name].append(steps * cfg.data.batch_size / window.seconds)
            print(f"round {round_ + 1} done", flush=True)

    baseline = rates[BASELINE]
    print()
    print("| switch | images/s (median) | vs default (median of per-round ratios) |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        ratio = statistics.median(v / b for v, b in zip(values, baseline, strict=True))
        label = " ".join(args.overrides) if name == BASELINE and args.overrides else name
        print(f"| `{label}` | {statistics.median(values):,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
