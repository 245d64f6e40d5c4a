"""Use a trained checkpoint: load it safely, re-test it, classify new images.

>>> image = Image.new("L", (60, 90), color=255)  # a white photo with a dark coat on it
>>> image.paste(0, (10, 10, 50, 80))
>>> prepare_image(image).shape
torch.Size([1, 28, 28])
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fmnist.data import normalize
from fmnist.errors import ConfigError
from fmnist.module import LitClassifier
from fmnist.validate import read_checkpoint

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SIZE = 28


def load_classifier(ckpt_path: str | Path) -> LitClassifier:
    """The trained model, rebuilt from the settings stored in its checkpoint (safely)."""
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)  # a clear error for a missing, foreign or unsafe file
    # Compiling pays off over thousands of training steps, not for a test pass or a few images.
    model = {**(checkpoint.get("hyper_parameters") or {}).get("model", {}), "compile": False}
    module = LitClassifier.load_from_checkpoint(
        path, map_location="cpu", weights_only=True, model=model
    )
    return module.eval()


def test_checkpoint(
    ckpt_path: str | Path, datamodule: L.LightningDataModule, accelerator: str = "auto"
) -> tuple[LitClassifier, dict[str, Any]]:
    """Test a checkpoint on the test set, exactly as training's final test does."""
    module = load_classifier(ckpt_path)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.test(module, datamodule=datamodule, verbose=False)
    return module, {k: float(v) for k, v in trainer.callback_metrics.items()}


def find_images(spec: str) -> list[Path]:
    """A file, every image in a folder, or every file a glob pattern matches."""
    path = Path(spec).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.exists():
        found = [path]
    else:
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not found:
        raise ConfigError(f"images={spec} matches no file (give a file, a folder or a glob)")
    return found


def prepare_image(image: Image.Image, invert: bool | str = "auto") -> torch.Tensor:
    """Any picture -> a 28x28 uint8 tensor [1, 28, 28] drawn like Fashion-MNIST.

    Fashion-MNIST shows a light garment on black, trimmed to its outline and
    scaled so its longer side fills the 28 pixels. ``invert="auto"`` flips a
    picture whose border is light (a dark object on a light background, as in
    most photos); ``True``/``False`` force it.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA") or "transparency" in image.info:
        background = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(background, image.convert("RGBA"))
    grey = np.asarray(image.convert("L"), dtype=np.uint8)
    if invert == "auto":
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        invert = bool(border.mean() > 127)
    if invert:
        grey = 255 - grey
    rows, cols = np.nonzero(grey > 30)
    if len(rows):  # trim to the object
        grey = grey[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = grey.shape
    scale = SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(grey).resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("L", (SIZE, SIZE), 0)
    canvas.paste(resized, ((SIZE - size[0]) // 2, (SIZE - size[1]) // 2))
    return torch.from_numpy(np.asarray(canvas, dtype=np.uint8).copy()).unsqueeze(0)


@dataclass
class Prediction:
    image: str
    top: list[tuple[str, float]] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        top = [{"class": name, "probability": round(p, 6)} for name, p in self.top or []]
        return {"image": self.image, "top": top}


def classify(
    module: LitClassifier, paths: list[Path], invert: bool | str = "auto", top_k: int = 3
) -> list[Prediction]:
    """Top-k classes for each image; a file that cannot be read gets an error, not a stop."""
    results: list[Prediction] = []
    batch: list[torch.Tensor] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                batch.append(prepare_image(image, invert))
            results.append(Prediction(str(path)))
        except (UnidentifiedImageError, OSError, ValueError) as err:
            results.append(Prediction(str(path), error=f"cannot read image: {err}"))
    if batch:
        with torch.no_grad():
            probs = module.eval_logits(normalize(torch.stack(batch))).softmax(dim=1)
        names = module.hparams.class_names
        values, labels = probs.topk(min(top_k, probs.shape[1]), dim=1)
        readable = iter(r for r in results if r.error is None)
        for result, vals, labs in zip(readable, values, labels, strict=True):
            result.top = [(names[int(c)], float(v)) for v, c in zip(vals, labs, strict=True)]
    return results
