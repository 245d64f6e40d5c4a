"""Hydra callbacks: checks that must run before Hydra creates the output folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def unwritable_reason(path: Path) -> str | None:
    """Why ``path`` cannot be created or written, or None if it can."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK):
        return f"{existing} is not writable"
    return None


class CheckOutputDir(Callback):
    """Stops with one clear line, before anything is written, if the output folder is unusable."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(Path(config.hydra.sweep.dir), "hydra.sweep.dir")

    @staticmethod
    def _check(path: Path, key: str) -> None:
        if reason := unwritable_reason(path):
            print(
                f"error: output dir {path} cannot be written ({reason}): "
                f"choose another with {key}=<folder>",
                file=sys.stderr,
            )
            sys.exit(2)
