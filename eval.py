"""Re-test a trained checkpoint on the Fashion-MNIST test set.

    python eval.py ckpt_path=outputs/runs/<date>_<time>/checkpoints/best.ckpt
    python eval.py ckpt_path=... accelerator=cpu data.data_dir=/path/to/data

The model is rebuilt from the settings stored in the checkpoint, so no model
overrides are needed. Prints the same table as the end of training and writes
``metrics.json`` to ``outputs/eval/<date>_<time>/``.
"""

import json
import logging
import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig

import fmnist  # noqa: F401  (registers the fmnist.* config resolvers)

log = logging.getLogger("fmnist.eval")


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from fmnist.errors import FmnistError
    from fmnist.inference import test_checkpoint
    from fmnist.report import render, results_table
    from fmnist.train import collect_metrics, route_lightning_logs_through_root

    route_lightning_logs_through_root()
    try:
        ckpt = Path(to_absolute_path(cfg.ckpt_path))
        datamodule = instantiate(cfg.data, data_dir=to_absolute_path(cfg.data.data_dir))
        module, logged = test_checkpoint(ckpt, datamodule, cfg.accelerator)
    except FmnistError as err:
        log.error("error: %s", err)
        sys.exit(2)
    metrics = collect_metrics(logged, list(module.hparams.class_names))
    log.info("Checkpoint: %s", ckpt)
    log.info("\n%s", render(results_table(metrics, module.hparams.class_names)))
    out = Path(cfg.output_dir) / "metrics.json"
    out.write_text(json.dumps({**metrics, "checkpoint": str(ckpt)}, indent=2) + "\n")
    log.info("Metrics written to %s", out)


if __name__ == "__main__":
    main()
