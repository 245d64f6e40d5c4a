"""Bad input, damaged data, interruptions, numerical faults: clear errors, nothing lost."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fmnist import dataset_files
from fmnist.dataset_files import find_files, locate
from fmnist.errors import ConfigError, CorruptDatasetError
from fmnist.module import LitClassifier
from fmnist.train import run
from tests.conftest import ROOT, fast_overrides
from tests.synthetic import write_dataset

# Every bad value README's table lists, with the message it gets. Each is caught
# before the data is looked for: data.data_dir points nowhere, yet the config
# error is what the user sees.
BAD_VALUES = [
    (["data.batch_size=0"], "data.batch_size=0 is not allowed: use an integer >= 1"),
    (["data.batch_size=1.5"], "data.batch_size=1.5 is not allowed: use an integer >= 1"),
    (["data.val_size=-1"], "data.val_size=-1 is not allowed: use an integer 0-59999"),
    (["data.val_size=60000"], "data.val_size=60000 is not allowed: use an integer 0-59999"),
    (["data.num_workers=-1"], "data.num_workers=-1 is not allowed: use an integer >= 0"),
    (["model.channels=[]"], "model.channels=[] must list at least one positive number"),
    (["model.channels=[16,0]"], "model.channels=[16, 0] must list at least one positive number"),
    (["model.kernel_size=0"], "model.kernel_size=0 is not allowed: use an odd size from 1 to 7"),
    (["model.kernel_size=4"], "model.kernel_size=4 is not allowed: use an odd size from 1 to 7"),
    (["model.kernel_size=9"], "model.kernel_size=9 is not allowed: use an odd size from 1 to 7"),
    (
        ["model.channels=[8,8,8,8]", "model.kernel_size=5"],
        "model.kernel_size=5 at block 4 is larger than the 3x3 feature map",
    ),
    (
        ["model.channels=[8,8,8,8,8]"],
        "model.channels has too many blocks: block 5 would get a 1x1 feature map",
    ),
    (["model.dropout=1.0"], r"model.dropout=1.0 must be in [0, 1)"),
    (["model.dropout=-0.1"], r"model.dropout=-0.1 must be in [0, 1)"),
    (["optimizer.lr=0"], "optimizer.lr=0 must be positive"),
    (["optimizer.lr=-0.001"], "optimizer.lr=-0.001 must be positive"),
    (["optimizer.name=nadam"], "optimizer.name='nadam' is unknown; choose one of"),
    (["scheduler.name=warm"], "scheduler.name='warm' is unknown; choose one of"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0 is not allowed: use an integer >= 1"),
    (["seed=abc"], "seed='abc' is not allowed: use an integer, or null"),
    (["reuse_freed_memory=maybe"], "reuse_freed_memory='maybe' is not allowed: use true or false"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_VALUES, ids=lambda v: str(v))
def test_bad_values_are_named_before_any_data_is_read(
    make_cfg, tmp_path: Path, overrides: list[str], message: str
) -> None:
    cfg = make_cfg(*overrides, f"data.data_dir={tmp_path / 'no-data'}")
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert message in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_on_a_machine_without_one(make_cfg) -> None:
    with pytest.raises(ConfigError, match="trainer.accelerator=gpu .* this machine has 0"):
        run(make_cfg("trainer.accelerator=gpu"))


def test_too_many_gpus(make_cfg) -> None:
    wanted = torch.cuda.device_count() + 1
    with pytest.raises(ConfigError, match=f"needs {wanted} GPU"):
        run(make_cfg("trainer.accelerator=gpu", f"trainer.devices={wanted}"))


def _text_file(path: Path) -> Path:
    path.write_text("hello")
    return path


def _checkpoint_file(path: Path, model: dict) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": {"model": model}}, path)
    return path


@pytest.mark.parametrize(
    ("make_file", "message"),
    [
        (lambda p: p / "missing.ckpt", "does not exist"),
        (
            lambda p: (p / "notes.txt").write_text("hello") and p / "notes.txt",
            "is not a checkpoint",
        ),
        (
            lambda p: _checkpoint_file(p / "other.ckpt", {"name": "cnn", "channels": [16, 32]}),
            "was trained with a different model: model.channels=\\[16, 32\\] in the checkpoint",
        ),
    ],
    ids=["missing", "not-a-checkpoint", "other-architecture"],
)
def test_bad_checkpoints(make_cfg, tmp_path: Path, make_file, message: str) -> None:
    path = make_file(tmp_path)
    with pytest.raises(ConfigError, match=message):
        run(make_cfg(f"ckpt_path={path}"))


class Payload:
    """Stands for anything a pickle could smuggle into a checkpoint."""


def test_checkpoint_with_arbitrary_objects_is_refused(make_cfg, tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": Payload()}}, path)
    with pytest.raises(ConfigError, match="could run code from it"):
        run(make_cfg(f"ckpt_path={path}"))


def test_resume_needs_a_run_folder(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="resume=.*last.ckpt does not exist"):
        run(make_cfg(f"resume={tmp_path}"))


def train_py(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def test_config_error_leaves_no_run_folder(synthetic_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = [o for o in fast_overrides(synthetic_dir, out) if not o.startswith("output_dir")]
    result = train_py(*overrides, "optimizer.lr=0", f"hydra.run.dir={out}")
    assert result.returncode == 2
    assert "error: optimizer.lr=0 must be positive" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not out.exists()


def test_unknown_option_and_key_get_hydra_messages(tmp_path: Path) -> None:
    unknown_option = train_py("optimizer=nadam", f"hydra.run.dir={tmp_path / 'a'}")
    assert unknown_option.returncode == 1
    assert "Could not find 'optimizer/nadam'" in unknown_option.stderr
    assert "Available options in 'optimizer'" in unknown_option.stderr
    unknown_key = train_py("optimizer.lrr=0.1", f"hydra.run.dir={tmp_path / 'b'}")
    assert unknown_key.returncode == 1
    assert "Could not override 'optimizer.lrr'" in unknown_key.stderr


def test_unwritable_output_dir(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    result = train_py(f"hydra.run.dir={a_file / 'run'}")
    assert result.returncode == 2
    assert f"output dir {a_file / 'run'} cannot be written ({a_file} is a file" in result.stderr
    assert "Traceback" not in result.stderr


# -- data integrity ------------------------------------------------------------------


def test_corrupt_local_file_is_never_replaced(
    synthetic_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = synthetic_copy / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 10))
    before = bad.read_bytes()
    monkeypatch.setattr(dataset_files, "download", lambda root: pytest.fail("downloaded"))
    found = locate(synthetic_copy, system_dir=None, allow_download=True)
    with pytest.raises(CorruptDatasetError, match=str(bad)):
        dataset_files.load_split(found, "train", verify_digest=False)
    assert bad.read_bytes() == before


def test_interrupted_download_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    def broken_fetch(folder: Path) -> None:
        raw = write_dataset(folder / "FashionMNIST" / "raw")
        big = raw / "train-images-idx3-ubyte.gz"
        big.write_bytes(big.read_bytes()[:1000])  # the connection dropped here
        raise ConnectionResetError("connection reset by peer")

    root = tmp_path / "data"
    with pytest.raises(ConnectionResetError):
        dataset_files.download(root, fetch=broken_fetch)
    assert find_files(root) is None
    assert not (root / "FashionMNIST" / "raw").exists()


def test_completed_download_is_moved_into_place(tmp_path: Path) -> None:
    root = tmp_path / "data"
    dataset_files.download(root, fetch=lambda f: write_dataset(f / "FashionMNIST" / "raw"))
    files = find_files(root)
    assert files and all(p.parent == root / "FashionMNIST" / "raw" for p in files.values())
    assert not (root / ".download").exists()


# -- checkpoints ---------------------------------------------------------------------


def test_checkpoint_writes_are_atomic(
    synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fsspec.implementations.local import LocalFileOpener

    from tests.test_module import quiet_trainer, small_datamodule

    module = LitClassifier(model={"name": "mlp", "hidden": [8]})
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(module, datamodule=small_datamodule(synthetic_dir))
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()

    def crash_half_way(self, data):
        LocalFileOpener.__dict__["_real_write"](self, data[: len(data) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(LocalFileOpener, "_real_write", LocalFileOpener.write, raising=False)
    monkeypatch.setattr(LocalFileOpener, "write", crash_half_way)
    with pytest.raises(OSError, match="No space left"):
        trainer.save_checkpoint(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert LitClassifier.load_from_checkpoint(path, weights_only=True) is not None


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(make_cfg) -> None:
    cfg = make_cfg("optimizer.lr=1e4", "trainer.max_epochs=2")
    with pytest.raises(Exception, match=r"training diverged: train/loss .* at step \d+") as err:
        run(cfg)
    assert "optimizer.lr=10000.0" in str(err.value)
    assert not (Path(cfg.output_dir) / "checkpoints" / "last.ckpt").exists()


def test_same_seed_same_metrics(make_cfg, tmp_path: Path) -> None:
    def metrics(name: str) -> dict:
        cfg = make_cfg("trainer.deterministic=true", "logger=none", f"output_dir={tmp_path / name}")
        run(cfg)
        result = json.loads((tmp_path / name / "metrics.json").read_text())
        # Times, paths, and the peak memory of the whole process (the second run in the
        # same process can only raise it) are not results of the seed.
        for key in ("wall_time_s", "fit_time_s", "tested_checkpoint", "best_checkpoint",
                    "last_checkpoint", "peak_memory"):  # fmt: skip
            result.pop(key)
        return result

    assert metrics("a") == metrics("b")


# -- interruption and resume -------------------------------------------------------

RESUME_OVERRIDES = [
    "model.channels=[8,16]",
    "model.hidden=32",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=60",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=5",
]


def _overrides(synthetic_dir: Path) -> list[str]:
    shrunk = fast_overrides(synthetic_dir, Path("unused"))
    return [o for o in shrunk if not o.startswith("output_dir")] + RESUME_OVERRIDES


@pytest.mark.slow
def test_sigterm_then_resume_matches_an_uninterrupted_run(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    overrides = _overrides(synthetic_dir)
    straight = train_py(*overrides, f"hydra.run.dir={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr

    run_dir = tmp_path / "interrupted"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    output = []
    for line in process.stdout:  # wait for the end of epoch 1, then stop somewhere in epoch 2
        output.append(line)
        if line.startswith("epoch 1/3"):
            time.sleep(random.uniform(0.05, 0.4))
            process.send_signal(signal.SIGTERM)
            break
    output.append(process.stdout.read())
    assert process.wait(timeout=120) == 143, "".join(output)
    text = "".join(output)
    assert f"Resume with: python train.py resume={run_dir}" in text
    stopped_at = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    print(f"stopped at step {stopped_at}")
    assert 60 <= stopped_at < 180

    resumed = train_py(*overrides, f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming from {run_dir / 'checkpoints' / 'last.ckpt'} (step {stopped_at})" in (
        resumed.stdout
    )

    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((run_dir / "metrics.json").read_text())
    assert b["global_step"] == a["global_step"] == 180
    for key in ("test/acc", "test/loss", "val/acc_best", "val/loss", "train/loss_epoch"):
        assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), key

    # Same folder, same TensorBoard run: the curves continue, no step twice.
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == sorted(set(steps))
    assert len(events.Scalars("val/acc")) == 3
    assert (run_dir / ".hydra" / "config.yaml").is_file()  # the original config is kept
    assert list((run_dir / ".hydra").glob("resumed_*/config.yaml"))
    log = (run_dir / "train.log").read_text()
    assert "stopped at step" in log and "Resuming from" in log  # one log, both attempts
