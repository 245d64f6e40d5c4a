"""reuse_freed_memory: freed blocks stay in the process instead of being page-faulted in again."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from fmnist import allocator
from fmnist.train import run
from tests.conftest import ROOT

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the setting is glibc's (Linux)",
)

# Allocates, touches and frees a 40 MB tensor 20 times, as a training step does with
# its activations, and prints the page faults that took.
FAULTS_OF_A_LOOP = """
import resource, sys, torch
from fmnist.allocator import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "on" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    buffer = torch.empty(40 * 2**20, dtype=torch.uint8)
    buffer.fill_(1)
    del buffer
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(setting: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_OF_A_LOOP, setting],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0], int(out[1])


@glibc_only
def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    pages_per_buffer = 40 * 2**20 // 4096
    applied, faults_on = faults("on")
    _, faults_off = faults("off")
    assert applied == "True"
    # Without the setting every buffer is mapped afresh: each of its pages faults, every time.
    assert faults_off >= 10 * pages_per_buffer
    # With it, the heap grows once or twice and later buffers reuse those pages: two
    # buffers' worth of faults on a quiet machine, five while other jobs kept it busy.
    assert faults_on <= faults_off / 3


def test_does_nothing_where_the_c_library_is_not_glibc(monkeypatch) -> None:
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.reuse_freed_memory() is False


@glibc_only
@pytest.mark.parametrize("setting", [True, False])
def test_run_records_the_setting(make_cfg, setting: bool) -> None:
    cfg = make_cfg(f"reuse_freed_memory={str(setting).lower()}", "trainer.limit_train_batches=2")
    run(cfg)
    metrics = json.loads((Path(cfg.output_dir) / "metrics.json").read_text())
    assert metrics["reuse_freed_memory"] is setting
