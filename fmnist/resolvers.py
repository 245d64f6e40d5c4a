"""The ``fmnist.*`` config resolvers, registered when the package is imported.

Registering on import means every process that runs a job (a Ray worker, a
SLURM job) has them as soon as it unpickles the job, before Hydra resolves
the job's folders.
"""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf

MAX_JOB_DIRNAME = 100


def job_dirname(num: int, override_dirname: str) -> str:
    """A sweep job's folder (and TensorBoard run) name: its number and its overrides.

    ``3_model.channels=[32,64],model.kernel_size=5``; slashes (paths) become
    underscores, and a very long name is cut and given a short hash.
    """
    name = f"{num}_{override_dirname}" if override_dirname else str(num)
    name = name.replace("/", "_")
    if len(name) > MAX_JOB_DIRNAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_JOB_DIRNAME - 9]}-{digest}"
    return name


def register() -> None:
    from fmnist import run_dir, sweep

    resolvers = {
        "fmnist.run_dir": (run_dir.run_dir, True),
        "fmnist.config_subdir": (run_dir.config_subdir, True),
        "fmnist.job_dirname": (job_dirname, False),
        "fmnist.gpus_per_job": (sweep.gpus_per_job, False),
        "fmnist.accelerator_for": (sweep.accelerator_for, False),
        "fmnist.ray_temp_dir": (sweep.ray_temp_dir, False),
    }
    for name, (fn, cache) in resolvers.items():
        OmegaConf.register_new_resolver(name, fn, use_cache=cache, replace=True)
