"""Train a convolutional network on Fashion-MNIST; every setting comes from ``conf/``.

    python train.py                                   # the teaching CNN: 10 epochs, batch 64
    python train.py trainer.max_epochs=3 data.batch_size=128 optimizer.lr=3e-4
    python train.py model=mlp                         # the fully connected baseline
    python train.py data.val_size=0                   # all 60,000 images: 938 batches per epoch
    python train.py debug=fast_dev_run                # one batch of each split, to check a setup
    python train.py ckpt_path=outputs/runs/<time>/checkpoints/last.ckpt   # resume
    python train.py -m model.channels=[16,32],[32,64] model.kernel_size=3,5   # a sweep
    python train.py --help                            # config groups and their options

Runs write to ``outputs/runs/<time>/``; ``tensorboard --logdir outputs`` shows them.
"""

import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import fmnist  # registers the fmnist.* config resolvers

log = logging.getLogger("fmnist")
# Ray (launcher=ray) keeps an auth token in ~/.ray unless told otherwise.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def discard_failed_start(output_dir: Path, config_subdir: str) -> None:
    """Remove what Hydra wrote for a run that stopped before doing anything.

    A new run's folder holding only the saved config and the log goes; in a
    resumed run only this attempt's config folder goes. Nothing else is touched.
    """
    if config_subdir.startswith(".hydra/resumed_"):
        shutil.rmtree(output_dir / config_subdir, ignore_errors=True)
    elif {p.name for p in output_dir.iterdir()} <= {".hydra", "train.log"}:
        shutil.rmtree(output_dir, ignore_errors=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    # Naming the package here makes a pickled main (Ray, submitit) import it, and with it
    # the resolvers, in the process that runs the job.
    log.debug("fmnist %s", fmnist.__version__)
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from fmnist.errors import ConfigError, FmnistError
    from fmnist.train import RunInterrupted, run

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return run_sweep_job(cfg, Path(hydra_cfg.runtime.output_dir))
    try:
        return run(cfg)
    except RunInterrupted as stop:
        sys.exit(stop.exit_code)  # the state is saved and the resume command printed
    except (FmnistError, MisconfigurationException) as err:
        # A problem the user can fix: the message says how; a traceback would bury it.
        if isinstance(err, ConfigError):
            discard_failed_start(Path(hydra_cfg.runtime.output_dir), hydra_cfg.output_subdir)
        if os.environ.get("FMNIST_TRACEBACK"):
            raise
        log.error("error: %s", err)
        sys.exit(2)


def run_sweep_job(cfg: DictConfig, output_dir: Path) -> float:
    """One job of a sweep: a failure is recorded for the summary, and the sweep goes on.

    A failed job returns NaN, which Optuna records as a failed trial.
    """
    import json
    import traceback

    from fmnist.train import run

    try:
        value = run(cfg)
    except Exception as err:
        log.error("error: %s", err)
        (output_dir / "traceback.txt").write_text(traceback.format_exc())
        status = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        (output_dir / "metrics.json").write_text(json.dumps(status, indent=2) + "\n")
        return float("nan")
    return float("nan") if value is None else value


if __name__ == "__main__":
    main()
