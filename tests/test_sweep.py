"""Sweeps: grids, parallel jobs on Ray, SLURM via submitit (local mode), Optuna, DDP.

These start real launchers and train real (tiny) jobs in subprocesses.
"""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fmnist.errors import ConfigError
from fmnist.sweep import collect, gpus_per_job, markdown_table, ray_temp_dir
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def job_overrides(synthetic_dir: Path) -> list[str]:
    """A job of a few batches of synthetic data (tests/conf/debug/sweep_test.yaml)."""
    return [
        f"hydra.searchpath=[file://{ROOT / 'tests' / 'conf'}]",
        "debug=sweep_test",
        f"data.data_dir={synthetic_dir}",
    ]


def train_py(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def read_summary(sweep_dir: Path) -> list[dict]:
    with (sweep_dir / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def job_times(sweep_dir: Path) -> list[tuple[float, float]]:
    """(start, end) of each job's training, from its log's timestamps."""
    spans = []
    for log in sorted(sweep_dir.glob("*/train.log")):
        lines = log.read_text().splitlines()
        stamps = [line[1:24] for line in lines if line.startswith("[20")]
        spans.append((stamps[0], stamps[-1]))
    return spans


def test_grid_sweep_writes_a_summary(synthetic_dir: Path, tmp_path: Path) -> None:
    result = train_py(
        "-m", *job_overrides(synthetic_dir), "model.channels=[4,8],[8,16]",
        "model.kernel_size=3,5", f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_summary(tmp_path)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    accuracies = [float(r["val_acc_best"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)  # best first
    assert {r["channels"] for r in rows} == {"[4, 8]", "[8, 16]"}
    assert (tmp_path / "summary.png").stat().st_size > 10_000
    assert "| job | overrides |" in (tmp_path / "summary.md").read_text()
    # Job folders are named after their overrides, so TensorBoard's run names say what they are.
    assert (tmp_path / "0_debug=sweep_test,model.channels=[4,8],model.kernel_size=3").is_dir()


def test_ready_made_grid_config() -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["sweep=filters_kernels"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params["model.channels"] == "[16,32],[32,64],[64,128]"
    assert params["model.kernel_size"] == "3,5,7"


def test_a_failing_job_is_reported_and_the_others_finish(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    # Adam at lr=1e4 diverges at once; the other two jobs train normally.
    result = train_py("-m", *job_overrides(synthetic_dir), "optimizer.lr=0.001,10000,0.002",
                      f"hydra.sweep.dir={tmp_path}")  # fmt: skip
    assert result.returncode == 1
    assert "1 of 3 jobs failed" in result.stderr
    rows = read_summary(tmp_path)
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    assert "training diverged" in rows[2]["error"]
    assert "optimizer.lr=10000" in rows[2]["overrides"]


def test_ray_runs_two_jobs_at_once_on_two_cores(synthetic_dir: Path, tmp_path: Path) -> None:
    result = train_py(
        "-m", "launcher=ray", *job_overrides(synthetic_dir), "model.channels=[4,8],[8,16]",
        "model.kernel_size=3,5", "trainer.limit_train_batches=30",
        "+hydra.launcher.ray.init.num_cpus=2", f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_summary(tmp_path)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert all(r["device"] == "cpu" for r in rows)
    spans = sorted(job_times(tmp_path))
    overlapping = sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    assert overlapping >= 1, spans  # at least two jobs ran at the same time
    metrics = json.loads(next(tmp_path.glob("0_*/metrics.json")).read_text())
    assert metrics["torch_threads"] == 1  # the two cores are shared out, one per job
    assert Path(ray_temp_dir(str(tmp_path))).is_dir()  # Ray's files: in its own folder


def test_submitit_local_mode(synthetic_dir: Path, tmp_path: Path) -> None:
    result = train_py("-m", "launcher=submitit_local", *job_overrides(synthetic_dir),
                      "model.kernel_size=3,5", f"hydra.sweep.dir={tmp_path}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_summary(tmp_path)
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    assert list(tmp_path.glob(".submitit/*"))


def test_optuna_search(synthetic_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = train_py("-m", "hparams_search=optuna", *job_overrides(synthetic_dir),
                      "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(read_summary(tmp_path)) == 3
    assert (tmp_path / "optuna.db").is_file()
    import optuna

    study = optuna.load_study(study_name="fmnist", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert len(study.trials) == 3 and study.best_value > 0.5


def test_ddp_on_cpu_with_two_processes(synthetic_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    result = train_py(*job_overrides(synthetic_dir), "trainer=ddp", "trainer.accelerator=cpu",
                      "trainer.devices=2", "trainer.limit_train_batches=null",
                      "data.train_subset=2560", f"hydra.run.dir={out}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["plan"]["device"] == "2 x cpu (ddp)"
    # 2,560 images, 128 per device and update, 2 devices: 10 updates per epoch.
    assert metrics["plan"]["batches_per_epoch"] == 10 and metrics["global_step"] == 10
    assert metrics["test/acc"] > 0.5


def test_ddp_inside_a_sweep_is_refused(synthetic_dir: Path, tmp_path: Path) -> None:
    result = train_py("-m", *job_overrides(synthetic_dir), "trainer=ddp",
                      "trainer.accelerator=cpu", "trainer.devices=2", "model.kernel_size=3",
                      f"hydra.sweep.dir={tmp_path}")  # fmt: skip
    assert result.returncode == 1
    rows = read_summary(tmp_path)
    assert rows[0]["status"] == "failed"
    assert "would re-launch the whole sweep" in rows[0]["error"]


def test_no_gpu_is_never_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fmnist.sweep.local_gpu_count", lambda: 0)
    assert gpus_per_job("auto", 4, None) == 0.0
    with pytest.raises(ConfigError, match="this machine has no GPU, so Ray would wait"):
        gpus_per_job(1, 1, None)
    assert gpus_per_job(1, 1, "auto") == 1.0  # a cluster's GPUs are its own business
    monkeypatch.setattr("fmnist.sweep.local_gpu_count", lambda: 2)
    assert gpus_per_job("auto", 4, None) == 0.25


def test_summary_of_files_alone(tmp_path: Path) -> None:
    # As on a cluster: only the shared sweep folder is there.
    for num, (acc, status) in enumerate([(0.8, "ok"), (0.9, "ok"), (None, "failed")]):
        job = tmp_path / f"{num}_job"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- model.kernel_size={3 + 2 * num}\n")
        if status == "ok":
            metrics = {"val/acc_best": acc, "test/acc": acc, "parameters": 1000 * (num + 1)}
            (job / "metrics.json").write_text(json.dumps(metrics))
    rows = collect(tmp_path)
    assert [r.job for r in rows] == ["1_job", "0_job", "2_job"]
    assert rows[2].status == "failed" and "did not finish" in rows[2].error
    assert "failed: no metrics.json" in markdown_table(rows)
