"""A 4-job sweep run sequentially, then in parallel with Ray, on the same machine.

    python bench/sweep_parallel.py                 # 4 jobs of about a minute each on 2 cores
    python bench/sweep_parallel.py --epochs 1      # a quicker look

The 4 jobs train the default CNN with 4 learning rates, so they cost the same.
Sequential: Hydra's basic launcher, one job after another, each using every
core. Parallel: ``launcher=ray`` with one core per job, so two jobs run at
once on two cores. Prints each sweep's wall time and their ratio (the target
is at most 0.8), and how the parallel jobs overlapped. Never run by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(name: str, out: Path, extra: list[str], epochs: int) -> float:
    command = [
        sys.executable, "train.py", "-m",
        "optimizer.lr=0.0005,0.001,0.002,0.003",
        f"trainer.max_epochs={epochs}", "trainer.accelerator=cpu",
        "callbacks.progress_bar=null", "callbacks.model_summary=null",
        "trainer.enable_model_summary=false", f"hydra.sweep.dir={out / name}", *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def job_spans(sweep_dir: Path) -> list[tuple[str, float, float]]:
    spans = []
    for metrics_file in sorted(sweep_dir.glob("*/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        end = metrics_file.stat().st_mtime
        spans.append((metrics_file.parent.name, end - metrics["wall_time_s"], end))
    return spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs of 55,000 images per job")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; 4 jobs of {args.epochs} epoch(s) each")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        sequential = sweep("sequential", out, [], args.epochs)
        ray = ["launcher=ray", f"+hydra.launcher.ray.init.num_cpus={os.cpu_count()}"]
        parallel = sweep("parallel", out, ray, args.epochs)
        spans = job_spans(out / "parallel")
        first = min(start for _, start, _ in spans)
        for name, start, end in spans:
            print(f"  parallel job {name}: {start - first:6.1f} s -> {end - first:6.1f} s")
        for kind in ("sequential", "parallel"):
            times = [e - s for _, s, e in job_spans(out / kind)]
            print(f"{kind}: jobs took {', '.join(f'{t:.0f}' for t in times)} s")
    print(f"sequential sweep: {sequential:.0f} s wall time")
    print(f"parallel sweep (Ray): {parallel:.0f} s wall time")
    print(f"parallel / sequential: {parallel / sequential:.2f}")


if __name__ == "__main__":
    main()
