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

from fmnist.run_dir import register_resolvers

log = logging.getLogger("fmnist")
register_resolvers()


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
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from fmnist.errors import ConfigError, FmnistError
    from fmnist.train import RunInterrupted, run

    hydra_cfg = HydraConfig.get()
    try:
        return run(cfg)
    except RunInterrupted as stop:
        sys.exit(stop.exit_code)  # the state is saved and the resume command printed
    except (FmnistError, MisconfigurationException) as err:
        # A problem the user can fix: the message says how; a traceback would bury it.
        if isinstance(err, ConfigError):
            discard_failed_start(Path(hydra_cfg.runtime.output_dir), hydra_cfg.output_subdir)
        if os.environ.get("FMNIST_TRACEBACK") or hydra_cfg.mode == RunMode.MULTIRUN:
            raise
        log.error("error: %s", err)
        sys.exit(2)


if __name__ == "__main__":
    main()
