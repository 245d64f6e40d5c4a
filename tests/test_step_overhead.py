"""The cuts to Lightning's and torch's fixed cost per step change nothing but that cost."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from lightning.pytorch.profilers import SimpleProfiler
from torch import nn

from fmnist.module import LitClassifier
from fmnist.step_overhead import NVML_CHECK, NoProfiler, stop_probing_for_a_missing_gpu
from fmnist.train import build_experiment, run


def test_trainer_gets_the_no_op_profiler_unless_one_is_asked_for(make_cfg) -> None:
    _, _, trainer = build_experiment(make_cfg())
    assert isinstance(trainer.profiler, NoProfiler)
    _, _, trainer = build_experiment(make_cfg("trainer.profiler=simple"))
    assert isinstance(trainer.profiler, SimpleProfiler)


def test_lightnings_profiler_still_reports_where_the_time_went(make_cfg, caplog) -> None:
    cfg = make_cfg("trainer.profiler=simple", "trainer.limit_train_batches=2", "test=false")
    with caplog.at_level(logging.INFO):
        run(cfg)
    report = caplog.text
    assert "run_training_batch" in report
    assert "[Callback]" in report  # the hooks are timed, not skipped


def test_no_profiler_context_does_nothing_and_nests() -> None:
    profiler = NoProfiler()
    with profiler.profile("outer") as outer, profiler.profile("inner") as inner:
        pass
    assert outer is None and inner is None
    assert profiler.profile("a") is profiler.profile("b")  # nothing made per hook


def test_a_missing_gpu_is_no_longer_probed_through_nvml(monkeypatch) -> None:
    monkeypatch.setenv(NVML_CHECK, "1")  # what `import lightning` sets; restored afterwards
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert stop_probing_for_a_missing_gpu() is True
    assert NVML_CHECK not in os.environ


def test_a_visible_gpu_keeps_the_fork_safe_check(monkeypatch) -> None:
    monkeypatch.setenv(NVML_CHECK, "1")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert stop_probing_for_a_missing_gpu() is False
    assert os.environ[NVML_CHECK] == "1"


def test_nothing_changes_where_the_nvml_check_was_not_asked_for(monkeypatch) -> None:
    monkeypatch.delenv(NVML_CHECK, raising=False)
    assert stop_probing_for_a_missing_gpu() is False
    assert NVML_CHECK not in os.environ


@pytest.mark.skipif(torch.cuda.is_available(), reason="about machines without a GPU")
def test_adam_steps_stop_loading_nvml_without_a_gpu(monkeypatch) -> None:
    monkeypatch.setenv(NVML_CHECK, "1")
    nvml_probes = []
    real_probe = torch.cuda._device_count_nvml
    monkeypatch.setattr(
        torch.cuda, "_device_count_nvml", lambda: nvml_probes.append(1) or real_probe()
    )
    weight = nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([weight])
    weight.sum().backward()
    optimizer.step()
    assert nvml_probes, "Adam asks for a GPU at every step, through NVML"
    assert stop_probing_for_a_missing_gpu() is True
    probes_before = len(nvml_probes)
    for _ in range(3):
        optimizer.step()
    assert len(nvml_probes) == probes_before
    assert not torch.cuda.is_available()


def test_module_attribute_fast_path_keeps_nn_module_rules() -> None:
    module = LitClassifier(model={"name": "mlp", "hidden": [8]})
    module._current_fx_name = "training_step"
    assert module._current_fx_name == "training_step"
    assert "_current_fx_name" not in dict(module.named_children())
    module.head = nn.Linear(2, 2)  # any other name still goes through nn.Module
    assert "head" in dict(module.named_children())
    module.scale = nn.Parameter(torch.ones(1))
    assert "scale" in dict(module.named_parameters())
