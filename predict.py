"""Classify your own pictures with a trained checkpoint.

    python predict.py ckpt_path=outputs/runs/<date>_<time>/checkpoints/best.ckpt images=photo.jpg
    python predict.py ckpt_path=... images=my_pictures/            # every image in a folder
    python predict.py ckpt_path=... "images=shop/**/*.png" json=true

Any size or colour works: each picture is made into a 28x28 grey image like
Fashion-MNIST's (light garment on black; ``invert=auto`` flips photos with a
light background). Prints the top 3 classes per image; an unreadable file is
reported and the others are still classified (exit status 1 if any failed).
"""

import json
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from fmnist.errors import FmnistError
    from fmnist.inference import classify, find_images, load_classifier

    invert = cfg.invert if cfg.invert == "auto" else bool(cfg.invert)
    try:
        module = load_classifier(cfg.ckpt_path)
        results = classify(module, find_images(str(cfg.images)), invert, int(cfg.top_k))
    except FmnistError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    width = max(len(r.image) for r in results)
    for result in results:
        if cfg.json:
            print(json.dumps(result.as_dict()))
        elif result.error:
            print(f"{result.image}: {result.error}", file=sys.stderr)
        else:
            guesses = "   ".join(f"{name} {p:6.1%}" for name, p in result.top)
            print(f"{result.image + ':':<{width + 1}}  {guesses}")
    if any(r.error for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
