"""One experiment from a composed Hydra config: build, fit, test, report.

:func:`run` is what ``python train.py`` calls. It returns the metric a Hydra
sweeper optimises (``optimized_metric``, the best validation accuracy by default).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate, to_absolute_path
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

import fmnist
from fmnist.allocator import reuse_freed_memory
from fmnist.callbacks import RunPlanPrinter
from fmnist.data import FashionMNISTDataModule
from fmnist.errors import ConfigError, FmnistError
from fmnist.models import count_parameters
from fmnist.module import LitClassifier, class_tag
from fmnist.report import config_tree, render, results_table
from fmnist.step_overhead import NoProfiler, stop_probing_for_a_missing_gpu
from fmnist.validate import check_config

log = logging.getLogger(__name__)

# Metrics shown as columns in TensorBoard's HParams view.
HPARAM_METRICS = ("val/acc_best", "val/acc", "val/loss", "test/acc", "test/loss")
# Config groups that describe an experiment (the rest is plumbing: paths, loggers, callbacks).
HPARAM_GROUPS = ("data", "model", "optimizer", "scheduler", "module", "trainer")


def route_lightning_logs_through_root() -> None:
    """Send Lightning's log lines through the handlers Hydra configured, once each.

    ``import lightning`` gives its loggers their own console handlers; with
    Hydra's handlers on the root logger every line would print twice, and none
    would reach the run's log file.
    """
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdvertising) for f in rank_zero.filters):
        rank_zero.addFilter(_DropAdvertising())


class _DropAdvertising(logging.Filter):
    """Drops Lightning's tips about its hosted services: not about this run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def silence_known_warnings() -> None:
    # Batches are cut from in-memory tensors by indexing: worker processes
    # would only add inter-process copies, so Lightning's advice does not apply.
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Raised inside Lightning's own pytree helper on recent torch; nothing to act on here.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # TensorBoard draws the model graph by tracing it once; torch now prefers export.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated.*")


def build_callbacks(cfg: DictConfig, has_validation: bool) -> list[Callback]:
    """Instantiate ``cfg.callbacks`` (a dict of named callbacks; null entries are off).

    Without validation (``data.val_size=0``) there is nothing to monitor: the
    checkpoint callback keeps only the last checkpoint, and callbacks that
    monitor a validation metric (early stopping) are turned off with a warning.
    """
    callbacks: list[Callback] = []
    for name, cb_cfg in (cfg.get("callbacks") or {}).items():
        if cb_cfg is None:
            continue
        overrides: dict[str, Any] = {}
        if not has_validation and cb_cfg.get("monitor"):
            if str(cb_cfg.get("_target_", "")).endswith("ModelCheckpoint"):
                overrides = {"monitor": None, "save_top_k": 0}
            else:
                log.warning(
                    "callbacks.%s monitors %s, but data.val_size=0 runs no validation: turned off",
                    name,
                    cb_cfg.monitor,
                )
                continue
        callbacks.append(instantiate(cb_cfg, **overrides))
    callbacks.append(RunPlanPrinter())
    return callbacks


def build_loggers(cfg: DictConfig, resume_step: int | None = None) -> list[Logger]:
    """Instantiate ``cfg.logger``; a resumed TensorBoard run hides what followed its checkpoint.

    ``purge_step`` makes TensorBoard drop events logged after the checkpoint
    by the run that died, so the resumed curves continue with no duplicate steps.
    """
    loggers = []
    for logger_cfg in (cfg.get("logger") or {}).values():
        if logger_cfg is None:
            continue
        extra = {}
        if resume_step is not None and str(logger_cfg.get("_target_", "")).endswith(
            "TensorBoardLogger"
        ):
            extra["purge_step"] = resume_step + 1
        loggers.append(instantiate(logger_cfg, **extra))
    return loggers


def hparams_of(cfg: DictConfig) -> dict[str, Any]:
    """The experiment's settings flattened to ``group.key`` -> scalar, for the HParams view.

    Nested options are flattened too (``data.augment.flip``); lists become strings.
    """
    flat: dict[str, Any] = {"seed": cfg.seed}

    def add(prefix: str, options: dict[str, Any]) -> None:
        for key, value in options.items():
            if key.startswith("_"):
                continue
            if isinstance(value, dict):
                add(f"{prefix}.{key}", value)
            elif isinstance(value, int | float | str | bool):
                flat[f"{prefix}.{key}"] = value
            else:
                flat[f"{prefix}.{key}"] = str(value)

    for group in HPARAM_GROUPS:
        if cfg.get(group) is not None:
            add(group, OmegaConf.to_container(cfg[group], resolve=True))
    return flat


def log_hparams(loggers: list[Logger], cfg: DictConfig) -> None:
    """Register the run's settings and the metrics to compare them by.

    For TensorBoard only the HParams session is written (no placeholder
    values): the metric columns then show the last value logged under each
    tag, i.e. the final metrics.
    """
    params = hparams_of(cfg)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            from torch.utils.tensorboard.summary import hparams

            writer = logger.experiment._get_file_writer()
            for summary in hparams(params, dict.fromkeys(HPARAM_METRICS, 0.0)):
                writer.add_summary(summary)
        else:
            logger.log_hyperparams(params)


def checkpoint_to_test(trainer: L.Trainer) -> str | None:
    """The best checkpoint, or the last one when nothing was monitored; None: current weights."""
    callback = trainer.checkpoint_callback
    if trainer.fast_dev_run or not isinstance(callback, ModelCheckpoint):
        return None
    return callback.best_model_path or callback.last_model_path or None


def collect_metrics(logged: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """Final metrics as floats, per-class test accuracies grouped by class name."""
    values = {k: float(v) for k, v in logged.items()}
    per_class = {}
    for name in class_names:
        key = f"test/acc_class/{class_tag(name)}"
        if key in values:
            per_class[name] = values.pop(key)
    if per_class:
        values["test/acc_per_class"] = per_class
    return values


def gpu_info() -> dict[str, str] | None:
    """Which GPU this process saw (a launcher like Ray sets CUDA_VISIBLE_DEVICES per job)."""
    if not torch.cuda.is_available():
        return None
    return {
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "all"),
        "name": torch.cuda.get_device_name(0),
    }


def versions() -> dict[str, str]:
    import hydra
    import torchmetrics

    return {
        "fmnist": fmnist.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "torchmetrics": torchmetrics.__version__,
        "hydra": hydra.__version__,
    }


class RunInterrupted(FmnistError):
    """Ctrl-C or SIGTERM stopped training; the state is saved (the callback said where)."""

    exit_code = 143  # 128 + SIGTERM, as a shell reports a terminated program


def checkpoint_to_resume(cfg: DictConfig) -> str | None:
    """``ckpt_path``, or ``<resume>/checkpoints/last.ckpt``, as an absolute path."""
    if cfg.get("resume") and not cfg.ckpt_path:
        run_dir = Path(to_absolute_path(cfg.resume))
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise ConfigError(
                f"resume={cfg.resume}: {last} does not exist; resume takes a run folder "
                "such as outputs/runs/<date>_<time> that holds checkpoints/last.ckpt"
            )
        return str(last)
    return to_absolute_path(cfg.ckpt_path) if cfg.ckpt_path else None


def check_writable(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"output dir {output_dir} cannot be written ({err.strerror}): "
            "choose another with hydra.run.dir=<folder>"
        ) from err


def build_experiment(
    cfg: DictConfig, resume_step: int | None = None
) -> tuple[FashionMNISTDataModule, LitClassifier, L.Trainer]:
    """The data module, the LightningModule and the Trainer (with loggers) of a checked config.

    Also what ``bench/`` measures, so the benchmarks time exactly the path ``train.py`` runs.
    """
    datamodule: FashionMNISTDataModule = instantiate(
        cfg.data, data_dir=to_absolute_path(cfg.data.data_dir)
    )
    module = LitClassifier(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),
        **OmegaConf.to_container(cfg.get("module") or {}, resolve=True),
    )
    loggers = build_loggers(cfg, resume_step)
    trainer_overrides: dict[str, Any] = {}
    if cfg.trainer.get("profiler") is None:  # Lightning's own no-op costs ~1 µs a hook
        trainer_overrides["profiler"] = NoProfiler()
    if not datamodule.has_validation:
        trainer_overrides["limit_val_batches"] = 0
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=build_callbacks(cfg, datamodule.has_validation),
        logger=loggers or False,
        **trainer_overrides,
    )
    log_hparams(loggers, cfg)
    return datamodule, module, trainer


def apply_process_settings(cfg: DictConfig) -> bool:
    """Settings for the whole process: torch's CPU threads, reusing freed memory, the GPU probe.

    The benchmarks call it too, so that they time what ``train.py`` runs.
    Returns whether freed memory is kept for reuse (see :mod:`fmnist.allocator`).
    """
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    stop_probing_for_a_missing_gpu()
    return bool(cfg.get("reuse_freed_memory", True)) and reuse_freed_memory()


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process and, on a GPU, peak memory allocated by torch."""
    import resource

    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 / 1024 if platform.system() == "Linux" else 1 / 2**20
    peak = {"rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["gpu_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def run(cfg: DictConfig) -> float | None:
    """Train, test and report one run; returns ``cfg.optimized_metric`` for sweepers."""
    route_lightning_logs_through_root()
    silence_known_warnings()
    started = time.perf_counter()
    output_dir = Path(cfg.output_dir)
    with open_dict(cfg):
        cfg.ckpt_path = checkpoint_to_resume(cfg)
    resume_from = check_config(cfg)  # every value, before any data is read
    reused = apply_process_settings(cfg)
    check_writable(output_dir)
    log.info("\n%s", render(config_tree(cfg)))
    log.info("Output directory: %s", output_dir)

    if cfg.seed is not None:  # 0 is a valid seed
        L.seed_everything(cfg.seed, workers=True, verbose=False)

    resume_step = int(resume_from["global_step"]) if resume_from else None
    if resume_from:
        log.info("Resuming from %s (step %d)", cfg.ckpt_path, resume_step)
        del resume_from  # Lightning reads it again, onto the right device
    datamodule, module, trainer = build_experiment(cfg, resume_step)
    log.info("Model: %s, %s parameters", cfg.model.name, f"{count_parameters(module.net):,}")

    fit_started = time.perf_counter()
    try:
        # weights_only: a checkpoint is data; loading one must never run code from it.
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    except SIGTERMException as stop:  # graceful stop: CheckpointOnInterrupt saved the state
        raise RunInterrupted("training interrupted; see the message above to resume") from stop

    fit_time = time.perf_counter() - fit_started
    logged = dict(trainer.callback_metrics)  # testing replaces the fit metrics: keep them
    tested = None
    if cfg.test and not trainer.interrupted:
        tested = checkpoint_to_test(trainer)
        log.info("Testing %s", tested or "the final weights")
        trainer.test(
            module, datamodule=datamodule, ckpt_path=tested, verbose=False, weights_only=True
        )
        logged.update(trainer.callback_metrics)
    class_names = list(module.hparams.class_names)
    metrics = collect_metrics(logged, class_names)

    checkpoints = trainer.checkpoint_callback
    plan = next((c.plan for c in trainer.callbacks if isinstance(c, RunPlanPrinter)), None)
    summary = {
        **metrics,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "parameters": count_parameters(module.net),
        "tested_checkpoint": tested,
        "best_checkpoint": getattr(checkpoints, "best_model_path", None) or None,
        "last_checkpoint": getattr(checkpoints, "last_model_path", None) or None,
        "plan": plan.as_dict() if plan else None,
        "fit_time_s": round(fit_time, 2),
        "wall_time_s": round(time.perf_counter() - started, 2),
        "seed": cfg.seed,
        "torch_threads": torch.get_num_threads(),
        "reuse_freed_memory": reused,
        "peak_memory": peak_memory_mb(),
        "gpu": gpu_info(),
        "versions": versions(),
    }
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        if "test/acc" in metrics:
            log.info("\n%s", render(results_table(metrics, class_names)))
        log.info("Metrics written to %s", output_dir / "metrics.json")

    value = metrics.get(cfg.optimized_metric)
    return float(value) if value is not None else None
