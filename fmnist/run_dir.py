"""Where a run writes: a new folder, or the folder of the run it resumes.

Used as OmegaConf resolvers (``fmnist.run_dir``, ``fmnist.config_subdir``, see
:mod:`fmnist.resolvers`) by ``conf/hydra/default.yaml``, so Hydra itself opens the right folder
before any of our code runs. Resuming (``resume=<run dir>``, or a
``ckpt_path`` inside a run's ``checkpoints/``) continues in the same folder:
same log file, same TensorBoard run.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

RUNS_DIR = Path("outputs") / "runs"
CONFIG_SUBDIR = ".hydra"


def resumed_run_dir(resume: str | None, ckpt_path: str | None) -> Path | None:
    """The run folder being continued, if any."""
    if resume:
        return Path(resume)
    if ckpt_path:
        checkpoint = Path(ckpt_path)
        run = checkpoint.parent.parent
        if checkpoint.parent.name == "checkpoints" and (run / CONFIG_SUBDIR).is_dir():
            return run
    return None


def run_dir(resume: str | None, ckpt_path: str | None) -> str:
    """``outputs/runs/<date>_<time>`` for a new run; the old folder for a resumed one."""
    resumed = resumed_run_dir(resume, ckpt_path)
    if resumed is not None:
        return str(resumed)
    return str(RUNS_DIR / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))


def config_subdir(resume: str | None, ckpt_path: str | None) -> str:
    """Where Hydra saves the composed config: a resumed run keeps its original one."""
    resumed = resumed_run_dir(resume, ckpt_path)
    if resumed is not None and (resumed / CONFIG_SUBDIR / "config.yaml").is_file():
        return f"{CONFIG_SUBDIR}/resumed_{datetime.now():%Y-%m-%d_%H-%M-%S}"
    return CONFIG_SUBDIR
