"""What ``reuse_freed_memory`` does to the project's training speed on a CPU.

    python bench/allocator.py                      # the default model and options
    python bench/allocator.py experiment=best      # any Hydra overrides, as for train.py
    python bench/allocator.py --pairs 7 --steps 200

The setting changes how the whole process allocates memory (see
``fmnist/allocator.py``) and cannot be undone inside a process, so each timing
runs in a fresh process: ``--pairs`` pairs, one process with the setting and
one without, the order alternating from pair to pair. Each process times
``--steps`` updates of the project's own training path (exactly what
``train.py`` builds, as ``bench/throughput.py`` times it) after ``--warmup``
updates. Printed: images per second, the time this process spent in the
kernel and its minor page faults per update, for both settings (medians), and
the ratio with/without (median of the per-pair ratios). A pair during which
other processes used more than ``--max-steal`` cores is timed again. Never
run by pytest.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(args: argparse.Namespace) -> None:
    """One timing in this process, printed as one JSON line."""
    sys.path.insert(0, str(HERE))
    from throughput import compose_config, load_data, time_project

    from fmnist.train import (
        apply_process_settings,
        route_lightning_logs_through_root,
        silence_known_warnings,
    )

    route_lightning_logs_through_root()
    silence_known_warnings()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    cfg = compose_config(
        [*args.overrides, f"reuse_freed_memory={str(args.child == 'on').lower()}"], "cpu"
    )
    applied = apply_process_settings(cfg)
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        data = load_data(cfg, torch.device("cpu"), Path(tmp))
        window = time_project(cfg, data, args.warmup, args.steps)
    print(
        json.dumps(
            {
                "applied": applied,
                "images_per_s": args.steps * cfg.data.batch_size / window.seconds,
                "system_share": window.system_seconds / max(window.own_cpu_seconds, 1e-9),
                "faults_per_step": window.minor_faults / args.steps,
                "others_cores": window.others_cores,
            }
        )
    )


def timed(args: argparse.Namespace, setting: str) -> dict:
    command = [sys.executable, __file__, "--child", setting, "--steps", str(args.steps)]
    command += ["--warmup", str(args.warmup), *args.overrides]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the timing process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150, help="timed updates per process")
    parser.add_argument("--warmup", type=int, default=20, help="untimed updates first")
    parser.add_argument("--max-steal", type=float, default=0.15, help="cores others may use")
    parser.add_argument("--retries", type=int, default=3, help="re-timings of a polluted pair")
    parser.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    overrides = " ".join(args.overrides) or "none"
    print(f"overrides: {overrides}; {args.pairs} pairs of processes, {args.steps} updates each")
    results: dict[str, list[dict]] = {"on": [], "off": []}
    for pair in range(args.pairs):
        order = ("off", "on") if pair % 2 == 0 else ("on", "off")
        for _ in range(args.retries + 1):
            got = {setting: timed(args, setting) for setting in order}
            if max(g["others_cores"] for g in got.values()) <= args.max_steal:
                break
            print("  other processes used the CPU: timing this pair again", flush=True)
        for setting in order:
            results[setting].append(got[setting])
        print(
            f"pair {pair + 1}: images/s with {got['on']['images_per_s']:,.0f}, "
            f"without {got['off']['images_per_s']:,.0f}",
            flush=True,
        )
    if not all(r["applied"] for r in results["on"]):
        print("note: the C library refused the setting (not glibc?): both arms ran the same")

    def median(setting: str, key: str) -> float:
        return statistics.median(r[key] for r in results[setting])

    print()
    print("| reuse_freed_memory | images/s | kernel share of CPU time | page faults per update |")
    print("|---|---:|---:|---:|")
    for setting, name in (("off", "false"), ("on", "true")):
        print(
            f"| {name} | {median(setting, 'images_per_s'):,.0f} "
            f"| {median(setting, 'system_share'):.1%} "
            f"| {median(setting, 'faults_per_step'):,.0f} |"
        )
    ratios = [
        on["images_per_s"] / off["images_per_s"]
        for on, off in zip(results["on"], results["off"], strict=True)
    ]
    print()
    print(f"with / without: {statistics.median(ratios):.2f}  (median of per-pair ratios)")


if __name__ == "__main__":
    main()
