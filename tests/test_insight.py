"""Pictures in TensorBoard, eval.py, predict.py and the worked example."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fmnist import CLASS_NAMES
from fmnist.errors import ConfigError
from fmnist.explain import EDGE_FILTER, IMAGE, by_hand, convolve
from fmnist.inference import classify, find_images, load_classifier, prepare_image
from fmnist.models import CNN
from fmnist.pictures import (
    TensorBoardPictures,
    confusion_figure,
    conv_block_outputs,
    feature_map_grid,
    figure_to_array,
    filter_grid,
    mistakes_figure,
)
from fmnist.train import run
from tests.conftest import ROOT, fast_overrides

# -- drawing ---------------------------------------------------------------------------


@pytest.mark.parametrize(("pool_first", "sizes"), [(False, [28, 14]), (True, [14, 7])])
def test_feature_maps_are_what_each_blocks_relu_gives(pool_first: bool, sizes: list[int]) -> None:
    net = CNN(channels=[4, 8], batch_norm=True, pool_first=pool_first).eval()
    maps = conv_block_outputs(net, torch.randn(2, 1, 28, 28))
    assert [m.shape[-1] for m in maps] == sizes  # full resolution unless pooled first
    assert all(m.min() >= 0 for m in maps)  # after the ReLU


def test_filter_grid_shows_sign_as_colour() -> None:
    weight = torch.zeros(32, 1, 3, 3)
    weight[0, 0, 1, 1] = 2.0  # positive centre: red
    weight[1, 0, 1, 1] = -2.0  # negative centre: blue
    grid = filter_grid(weight, pixels=9)
    assert grid.shape == (3, 4 * 9 + 5 * 2, 8 * 9 + 9 * 2)  # 8 x 4 filters, 2-pixel frames
    red_centre = grid[:, 2 + 4, 2 + 4]  # filter 0, centre pixel
    blue_centre = grid[:, 2 + 4, 2 + 9 + 2 + 4]  # filter 1
    assert red_centre.tolist() == [1.0, 0.0, 0.0]
    assert blue_centre.tolist() == [0.0, 0.0, 1.0]


def test_feature_map_grid() -> None:
    grid = feature_map_grid(torch.randn(16, 28, 28), pixels=28)
    assert grid.shape == (3, 2 * 28 + 3 * 2, 8 * 28 + 9 * 2)
    assert float(grid.min()) >= 0.0 and float(grid.max()) <= 1.0


def test_figures_render() -> None:
    matrix = torch.eye(10, dtype=torch.long) * 90 + 1
    array = figure_to_array(confusion_figure(matrix, CLASS_NAMES))
    assert array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8
    images = torch.randint(0, 255, (5, 1, 28, 28), dtype=torch.uint8)
    figure = mistakes_figure(images, [0, 1, 2, 3, 4], [6, 6, 6, 6, 6], [0.9] * 5, CLASS_NAMES)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles[0] == "true: T-shirt/top\npred: Shirt (90%)" and len(titles) == 5


# -- a run's pictures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short run on synthetic data with every picture on, tested on the full test set."""
    out = tmp_path_factory.mktemp("pictures-run")
    overrides = [o for o in fast_overrides(synthetic_dir, out) if not o.startswith("output_dir")]
    result = subprocess.run(
        [sys.executable, "train.py", *overrides, "trainer.max_epochs=2",
         "trainer.limit_test_batches=null", f"hydra.run.dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_run_logs_pictures_and_graph(trained_run: Path) -> None:
    events = EventAccumulator(str(trained_run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    images = set(events.Tags()["images"])
    assert {"filters/conv1", "test/confusion_matrix", "test/per_class_accuracy"} <= images
    if json.loads((trained_run / "metrics.json").read_text())["test/acc"] < 1.0:
        assert "test/misclassified" in images  # synthetic classes are often learnt perfectly
    for block in (1, 2):
        assert f"feature_maps/block{block}/0_T-shirt_top" in images
        assert f"feature_maps/block{block}/9_Ankle_boot" in images
    steps = [e.step for e in events.Images("filters/conv1")]
    assert steps == [0, 8, 16]  # before training, then after each of the 2 epochs
    assert events.Tags()["graph"]
    for name in ("confusion_matrix", "per_class_accuracy"):
        assert (trained_run / "pictures" / f"{name}.png").is_file()


def test_most_confident_mistakes_are_kept() -> None:
    pictures = TensorBoardPictures(mistakes=3)
    pictures.on_test_epoch_start(None, None)
    for seed in range(4):  # four batches of 50 images
        generator = torch.Generator().manual_seed(seed)
        logits = torch.randn(50, 10, generator=generator) * 3
        labels = torch.randint(0, 10, (50,), generator=generator)
        images = torch.randn(50, 1, 28, 28, generator=generator)
        pictures.on_test_batch_end(None, None, {"logits": logits}, (images, labels), seed)
    kept = pictures._mistakes
    assert len(kept["true"]) == 3
    assert (kept["true"] != kept["predicted"]).all()
    confidence = kept["confidence"].tolist()
    assert confidence == sorted(confidence, reverse=True)
    assert kept["images"].dtype == torch.uint8 and kept["images"].shape == (3, 1, 28, 28)


def test_pictures_can_be_turned_off(make_cfg) -> None:
    cfg = make_cfg("callbacks.pictures=null")
    run(cfg)
    events = EventAccumulator(str(Path(cfg.output_dir) / "tensorboard"))
    events.Reload()
    assert events.Tags()["images"] == []
    assert not (Path(cfg.output_dir) / "pictures").exists()


# -- eval.py ---------------------------------------------------------------------------


def test_eval_reproduces_the_final_test(
    trained_run: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    trained = json.loads((trained_run / "metrics.json").read_text())
    result = subprocess.run(
        [sys.executable, "eval.py", f"ckpt_path={trained['tested_checkpoint']}",
         f"data.data_dir={synthetic_dir}", "data.system_dir=null", "data.download=false",
         "data.verify_digest=false", "accelerator=cpu", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Test results" in result.stdout and "T-shirt/top" in result.stdout
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluated["test/acc"] == trained["test/acc"]
    assert evaluated["test/loss"] == pytest.approx(trained["test/loss"], rel=1e-6)
    assert evaluated["test/acc_per_class"] == trained["test/acc_per_class"]


# -- predict.py ------------------------------------------------------------------------


def _photo(dark_on_light: bool) -> Image.Image:
    """A 'photo' of a plain garment: a block on a contrasting background, RGB, any size."""
    background, garment = (235, 40) if dark_on_light else (10, 220)
    image = Image.new("RGB", (120, 90), (background,) * 3)
    image.paste((garment,) * 3, (40, 10, 80, 80))
    return image


def test_prepare_image_matches_fashion_mnist_drawing() -> None:
    for dark_on_light in (True, False):
        tensor = prepare_image(_photo(dark_on_light))
        assert tensor.shape == (1, 28, 28) and tensor.dtype == torch.uint8
        assert int(tensor[0, 14, 14]) > 200  # the garment is light...
        assert int(tensor[0, 0, 0]) == 0  # ...on black
        assert int((tensor[0] > 100).any(dim=1).sum()) == 28  # scaled to fill the height
    forced = prepare_image(_photo(False), invert=True)
    assert int(forced[0, 14, 14]) < 50


def test_prepare_image_handles_transparency_and_grey() -> None:
    rgba = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    rgba.paste((20, 20, 20, 255), (10, 5, 40, 45))
    assert int(prepare_image(rgba)[0, 14, 14]) > 200
    assert prepare_image(Image.new("L", (3, 7), 0)).shape == (1, 28, 28)


def test_find_images(tmp_path: Path) -> None:
    for name in ("a.png", "b.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_images(str(tmp_path))] == ["a.png", "b.jpg"]
    assert [p.name for p in find_images(str(tmp_path / "*.jpg"))] == ["b.jpg"]
    assert [p.name for p in find_images(str(tmp_path / "notes.txt"))] == ["notes.txt"]
    with pytest.raises(ConfigError, match="matches no file"):
        find_images(str(tmp_path / "*.gif"))


def test_classify_reports_bad_files_and_goes_on(trained_run: Path, tmp_path: Path) -> None:
    module = load_classifier(trained_run / "checkpoints" / "best.ckpt")
    _photo(True).save(tmp_path / "a.jpg")
    (tmp_path / "b.png").write_bytes(b"not an image")
    _photo(False).save(tmp_path / "c.png")
    results = classify(module, find_images(str(tmp_path)), top_k=3)
    assert [r.image.rsplit("/", 1)[-1] for r in results] == ["a.jpg", "b.png", "c.png"]
    assert results[1].error and "cannot read image" in results[1].error
    for result in (results[0], results[2]):
        assert len(result.top) == 3 and {n for n, _ in result.top} <= set(CLASS_NAMES)
        probabilities = [p for _, p in result.top]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001


def test_predict_py_json(trained_run: Path, tmp_path: Path) -> None:
    _photo(True).save(tmp_path / "coat.jpg")
    (tmp_path / "broken.png").write_bytes(b"oops")
    result = subprocess.run(
        [sys.executable, "predict.py", f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}",
         f"images={tmp_path}", "json=true", "top_k=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1  # one file failed; the other was still classified
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(line["image"]).name for line in lines] == ["broken.png", "coat.jpg"]
    assert "error" in lines[0]
    assert len(lines[1]["top"]) == 2 and lines[1]["top"][0]["class"] in CLASS_NAMES


# -- the worked example ----------------------------------------------------------------


def test_worked_example_matches_conv2d() -> None:
    unpadded = convolve(IMAGE, EDGE_FILTER, padding=0)
    assert unpadded.shape == (3, 3)
    for row in range(3):
        for col in range(3):
            assert by_hand(IMAGE, EDGE_FILTER, row, col)[1] == float(unpadded[row, col])
    padded = convolve(IMAGE, EDGE_FILTER, padding=1)
    assert padded.shape == (5, 5)
    assert torch.equal(padded[1:4, 1:4], unpadded)  # away from the frame, padding changes nothing
    assert float(unpadded[0, 0]) == 0  # a flat bright patch: the products cancel


def test_explain_prints_the_example_and_parameter_counts() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fmnist.explain"], cwd=ROOT, capture_output=True, text=True,
        check=True, env={"COLUMNS": "160", "PATH": ""},
    ).stdout  # fmt: skip
    assert "-1x1 + -1x1 + -1x0 + -1x1 + 8x1 + -1x0 + -1x1 + -1x1 + -1x0 = 3" in out
    for count in ("320", "18,496", "401,536", "421,642", "100,480", "101,770"):
        assert count in out


# -- a live TensorBoard ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, data: bytes | None = None) -> object:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_live_tensorboard_serves_the_run(trained_run: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(trained_run),
         "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/data"
    try:
        deadline = time.monotonic() + 60
        runs: object = []
        while time.monotonic() < deadline:
            try:
                runs = _get(f"{base}/runs")
                if runs:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert runs == ["tensorboard"]
        scalars = _get(f"{base}/plugin/scalars/tags")["tensorboard"]
        assert {"train/loss", "val/acc", "test/acc"} <= set(scalars)
        images = _get(f"{base}/plugin/images/tags")["tensorboard"]
        assert {"filters/conv1", "test/confusion_matrix"} <= set(images)
        body = json.dumps({"experimentName": ""}).encode()
        experiment = _get(f"{base}/plugin/hparams/experiment", body)
        hparams = {h["name"] for h in experiment["hparamInfos"]}
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"model.channels", "optimizer.lr", "data.batch_size"} <= hparams
        assert {"val/acc_best", "test/acc"} <= metrics
    finally:
        server.terminate()
        server.wait(timeout=30)
