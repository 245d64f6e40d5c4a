"""bench/gpu_checks.sh: the script a GPU machine runs must at least start right.

Its checks need a GPU, so here only its own logic is exercised: the commands it
would run (dry run) and its refusal on a machine without a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_checks.sh"
CHECKS = ("throughput_default", "throughput_fast", "fast", "best")


def run_script(log_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), str(log_dir)],
        env={**os.environ, "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dry_run_lists_every_check_with_its_command(tmp_path: Path) -> None:
    result = run_script(tmp_path, GPU_CHECKS_DRY_RUN="1")
    assert result.returncode == 0, result.stderr
    for name in CHECKS:
        assert (tmp_path / f"{name}.log").read_text().startswith(f"== {name} (limit ")
    assert "--device cuda" in (tmp_path / "throughput_default.log").read_text()
    assert "data.on_device=true" in (tmp_path / "throughput_fast.log").read_text()
    assert "experiment=best trainer.accelerator=gpu" in (tmp_path / "best.log").read_text()
    summary = (tmp_path / "summary.log").read_text().splitlines()
    assert [line.split(":")[0] for line in summary] == [*CHECKS, "sweep"]
    assert all("not run" in line or "skipped" in line for line in summary)


@pytest.mark.skipif(torch.cuda.is_available(), reason="would start the real GPU checks")
def test_refuses_without_a_gpu_and_writes_nothing(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    result = run_script(log_dir)
    assert result.returncode == 1
    assert "torch sees no GPU" in result.stderr
    assert not log_dir.exists()
