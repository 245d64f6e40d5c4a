"""Cuts to the fixed Python cost that Lightning and torch add around every training step.

A step of the default CNN takes 10-25 ms on two CPU cores; Lightning's loop
added a fixed ~0.8 ms of Python around it (~0.5 ms with these cuts; see
``bench/throughput.py``), which is where the project path loses to a
hand-written loop. Two parts of that were pure waste, removable without
touching Lightning:

- Lightning wraps each hook it calls (about 70 per step with the default
  callbacks) in ``trainer.profiler.profile(...)``. With no profiler asked for,
  that is a ``contextlib.contextmanager`` doing nothing, at ~1 µs a time;
  :class:`NoProfiler` hands back one shared ``nullcontext`` instead.
- ``import lightning`` sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (so that
  asking whether there is a GPU never spoils a later ``fork``). Adam and AdamW
  ask at every step, and on a machine with torch built for CUDA but no NVIDIA
  driver, each answer is a failed attempt to load the NVML library (~40 µs).
  :func:`stop_probing_for_a_missing_gpu` switches back to torch's own check,
  which answers in under a microsecond, once NVML has said there is no GPU.

(The third cut, the module's own attribute writes, is
``LitClassifier.__setattr__``.)
"""

from __future__ import annotations

import contextlib
import os

import torch
from lightning.pytorch.profilers import PassThroughProfiler

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


class NoProfiler(PassThroughProfiler):
    """Lightning's "no profiler", with a ``profile`` context that costs next to nothing.

    The Trainer gets it when ``trainer.profiler`` is null; ``trainer.profiler=simple``
    (or ``advanced``, ``pytorch``) still gives Lightning's real profilers.
    """

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:  # type: ignore[override]
        return self._nothing


def stop_probing_for_a_missing_gpu() -> bool:
    """Where NVML finds no GPU, let torch's cheap check answer "is there a GPU?"; True if so.

    Nothing changes where a GPU is visible (the fork-safe NVML check stays), where
    torch is built without CUDA (it answers at once anyway) or where the NVML
    check was not asked for.
    """
    if os.environ.get(NVML_CHECK) != "1" or not torch.backends.cuda.is_built():
        return False
    if torch.cuda.is_available():  # the NVML check, once
        return False
    # Without a GPU the CUDA runtime is never initialised, so fork stays safe.
    del os.environ[NVML_CHECK]
    return True
