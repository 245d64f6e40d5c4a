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
import sys

import hydra
from omegaconf import DictConfig

log = logging.getLogger("fmnist")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from fmnist.errors import FmnistError
    from fmnist.train import run

    try:
        return run(cfg)
    except (FmnistError, MisconfigurationException) as err:
        # A problem the user can fix: the message says how; a traceback would bury it.
        if os.environ.get("FMNIST_TRACEBACK") or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        log.error("%s", err)
        sys.exit(2)


if __name__ == "__main__":
    main()
