"""What a multirun adds: where each job runs, and the summary at the end.

Launchers and sweepers are Hydra plugins (Ray, submitit, Optuna); this module
only gives them their settings (resolvers used by ``conf/launcher/ray.yaml``,
registered by :mod:`fmnist.resolvers`)
and, once every job has ended, reads each job's ``metrics.json`` and writes
``summary.csv``, ``summary.md`` and ``summary.png`` in the sweep folder. It
reads files only, so it works as well when the jobs ran on other machines of a
cluster that shares the sweep folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from fmnist.errors import ConfigError

log = logging.getLogger(__name__)

# Unix sockets Ray creates under its temp folder must fit in 107 bytes.
RAY_TEMP_DIR_MAX = 40


# -- launcher settings -----------------------------------------------------------------


def local_gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def gpus_per_job(setting: Any, jobs_per_gpu: Any, address: Any) -> float:
    """GPUs Ray reserves for each job: a share of one when several jobs fit on a GPU.

    ``auto`` asks for GPUs only if this machine has some, so a CPU-only machine
    never waits for a GPU that does not exist.
    """
    jobs = int(jobs_per_gpu)
    if jobs < 1:
        raise ConfigError(f"launcher.jobs_per_gpu={jobs_per_gpu} must be at least 1")
    if setting == "auto":
        return 1.0 / jobs if local_gpu_count() > 0 else 0.0
    gpus = float(setting)
    if gpus > 0 and address in (None, "") and local_gpu_count() == 0:
        raise ConfigError(
            f"launcher.gpus_per_job={setting} but this machine has no GPU, so Ray would wait "
            "for one forever: use launcher.gpus_per_job=auto (CPU jobs), or join a GPU "
            "cluster with launcher.address=auto"
        )
    return gpus


def accelerator_for(setting: Any, jobs_per_gpu: Any, address: Any) -> str:
    return "gpu" if gpus_per_job(setting, jobs_per_gpu, address) > 0 else "cpu"


def ray_temp_dir(sweep_dir: str) -> str:
    """Ray's session folder: inside the sweep folder when its path is short enough.

    Ray's socket paths must fit in 107 bytes; for a deep sweep folder a
    per-sweep folder under the system temp folder is used instead (never Ray's
    shared ``/tmp/ray``).
    """
    inside = Path(sweep_dir).absolute() / "ray"
    if len(str(inside)) <= RAY_TEMP_DIR_MAX:
        return str(inside)
    digest = hashlib.sha1(str(inside).encode()).hexdigest()[:10]
    return str(Path(tempfile.gettempdir()) / f"fmnist-ray-{digest}")


# -- the summary -----------------------------------------------------------------------


@dataclass
class JobRow:
    job: str
    overrides: str
    channels: str
    kernel_size: str
    parameters: int | None
    val_acc_best: float | None
    test_acc: float | None
    epochs: int | None
    wall_time_s: float | None
    device: str
    status: str
    error: str


def read_job(job_dir: Path) -> JobRow:
    """One job's row, from the files it left (a job that died has no metrics.json)."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    config_file = job_dir / ".hydra" / "config.yaml"
    model = (
        (yaml.safe_load(config_file.read_text()) or {}).get("model", {})
        if config_file.is_file()
        else {}
    )
    metrics_file = job_dir / "metrics.json"
    metrics: dict[str, Any] = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    status = metrics.get("status", "ok" if metrics else "failed")
    error = metrics.get("error", "" if metrics else "no metrics.json: the job did not finish")
    return JobRow(
        job=job_dir.name,
        overrides=" ".join(overrides or []),
        channels=str(model.get("channels", "")),
        kernel_size=str(model.get("kernel_size", "")),
        parameters=metrics.get("parameters"),
        val_acc_best=metrics.get("val/acc_best"),
        test_acc=metrics.get("test/acc"),
        epochs=metrics.get("epochs"),
        wall_time_s=metrics.get("wall_time_s"),
        device=(metrics.get("plan") or {}).get("device", ""),
        status=status,
        error=error,
    )


def collect(sweep_dir: Path) -> list[JobRow]:
    """Every job of a sweep, best first (by best validation accuracy, then test accuracy)."""
    jobs = [d for d in sweep_dir.iterdir() if (d / ".hydra").is_dir()]
    rows = [read_job(d) for d in jobs]

    def rank(row: JobRow) -> tuple:
        score = row.val_acc_best if row.val_acc_best is not None else row.test_acc
        return (row.status != "ok", -(score if score is not None else -math.inf), row.job)

    return sorted(rows, key=rank)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_csv(rows: list[JobRow], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(JobRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)


COLUMNS = ("job", "overrides", "parameters", "val_acc_best", "test_acc", "epochs",
           "wall_time_s", "device", "status")  # fmt: skip


def markdown_table(rows: list[JobRow]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        values = [_cell(getattr(row, c)) for c in COLUMNS]
        if row.status != "ok":
            values[-1] = f"{row.status}: {row.error}".replace("|", "/").replace("\n", " ")
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[JobRow], path: Path) -> None:
    """Test accuracy against parameter count, each point labelled by channels and kernel size."""
    from matplotlib.figure import Figure

    done = [r for r in rows if r.status == "ok" and r.test_acc is not None and r.parameters]
    figure = Figure(figsize=(8, 5.5), layout="constrained")
    ax = figure.subplots()
    ax.scatter([r.parameters for r in done], [r.test_acc for r in done], color="tab:blue")
    for r in done:
        label = f"{r.channels} k={r.kernel_size}" if r.channels else r.job
        ax.annotate(label, (r.parameters, r.test_acc), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{len(done)} of {len(rows)} jobs: test accuracy against model size")
    ax.grid(True, alpha=0.3)
    figure.savefig(path, dpi=100)


class SweepSummary(Callback):
    """At the end of a multirun: summary.csv, summary.md and summary.png in the sweep folder.

    The sweep exits with status 1 if any job failed (after writing the summary).
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = collect(sweep_dir)
        write_csv(rows, sweep_dir / "summary.csv")
        table = markdown_table(rows)
        (sweep_dir / "summary.md").write_text(f"# Sweep {sweep_dir.name}\n\n{table}")
        plot(rows, sweep_dir / "summary.png")
        failed = [r for r in rows if r.status != "ok"]
        print(f"\nSweep summary ({len(rows)} jobs, best first), in {sweep_dir}:\n\n{table}")
        if failed:
            print(f"{len(failed)} of {len(rows)} jobs failed; see summary.md", file=sys.stderr)
            sys.exit(1)
