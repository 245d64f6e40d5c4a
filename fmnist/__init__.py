"""fmnist: train and compare convolutional networks on Fashion-MNIST.

The pieces, each in its own module:

- :mod:`fmnist.dataset_files` finds, downloads and verifies the four original IDX files.
- :mod:`fmnist.data` is the ``LightningDataModule``: split, batches, normalisation.
- :mod:`fmnist.models` holds plain ``nn.Module`` networks (the teaching CNN, an MLP baseline).
- :mod:`fmnist.module` is the ``LightningModule``: loss, metrics, optimiser.
- :mod:`fmnist.train` runs one experiment from a Hydra config.
"""

__version__ = "0.1.0"

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

from fmnist.resolvers import register as _register_resolvers  # noqa: E402

_register_resolvers()
