"""GPU check for parallel sweeps: run it on a machine with GPUs (under 5 minutes).

    python bench/gpu_sweep_check.py

Runs a 4-job sweep with ``launcher=ray`` twice: ``jobs_per_gpu=1`` (each job on
a GPU of its own; with fewer than 4 GPUs the rest wait) and ``jobs_per_gpu=4``
(Ray's fractional GPUs: up to 4 jobs share one). Prints, for every job, the GPU
it saw (from CUDA_VISIBLE_DEVICES as Ray set it, and the device name), when it
ran relative to the sweep's start, how many jobs overlapped, and each sweep's
wall time. Never run by pytest; prints an error and exits 1 without a GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def sweep(out: Path, jobs_per_gpu: int) -> float:
    command = [
        sys.executable, "train.py", "-m", "launcher=ray", f"launcher.jobs_per_gpu={jobs_per_gpu}",
        "model.channels=[32,64],[64,128]", "model.kernel_size=3,5", "trainer.max_epochs=2",
        "data.batch_size=256", "callbacks.progress_bar=null", "callbacks.model_summary=null",
        f"hydra.sweep.dir={out}",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    return time.perf_counter() - start


def report(out: Path, wall: float, jobs_per_gpu: int) -> None:
    spans = []
    for metrics_file in sorted(out.glob("*/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        end = metrics_file.stat().st_mtime
        visible = (metrics.get("gpu") or {}).get("cuda_visible_devices", "?")
        spans.append((metrics_file.parent.name, end - metrics["wall_time_s"], end, visible,
                      metrics["plan"]["device"], metrics.get("test/acc")))  # fmt: skip
    first = min(s for _, s, *_ in spans)
    print(f"\njobs_per_gpu={jobs_per_gpu}: sweep wall time {wall:.1f} s")
    for name, start, end, visible, device, acc in spans:
        print(f"  {name[:48]:48s} GPU {visible:>3} ({device}) {start - first:6.1f}-"
              f"{end - first:6.1f} s  test acc {acc:.4f}")  # fmt: skip
    most = max(sum(1 for _, s2, e2, *_ in spans if s2 < e and e2 > s) for _, s, e, *_ in spans)
    print(f"  at most {most} jobs ran at the same time")


def main() -> None:
    if not torch.cuda.is_available():
        print("error: no GPU here; run this on a machine with one", file=sys.stderr)
        sys.exit(1)
    print(f"{torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}")
    with tempfile.TemporaryDirectory() as tmp:
        for jobs_per_gpu in (1, 4):
            out = Path(tmp) / f"jobs_per_gpu_{jobs_per_gpu}"
            report(out, sweep(out, jobs_per_gpu), jobs_per_gpu)


if __name__ == "__main__":
    main()
