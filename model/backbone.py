"""The InceptionV3 frame encoder, with preprocessing inside the model.

Weights come from one of three places, and the bundle records which:
- ``imagenet``: Keras downloads and caches them (connected machines only);
- a local path or ``s3://`` URI of a weights file (air-gapped sites);
- ``random``: an untrained backbone for tests and the offline demo, labelled as such everywhere.
"""

from __future__ import annotations

import keras

from model.config import BackboneConfig
from model.storage import fetch

RANDOM = "random"
IMAGENET = "imagenet"
RANDOM_LABEL = "random (untrained backbone: for tests and demos, not for moderation)"


def describe_source(source: str) -> str:
    """How a weights source is shown to users; random weights are always called out."""
    return RANDOM_LABEL if source == RANDOM else source


def build_backbone(config: BackboneConfig, weights: str | None, seed: int = 0) -> keras.Model:
    """uint8 RGB frames [N, S, S, 3] -> average-pooled features [N, 2048].

    ``weights`` is ``imagenet``, ``random`` (seeded), a weights file, or None for a model whose
    weights the caller loads next (a bundle).

    Scaling to [-1, 1] (InceptionV3's ``preprocess_input``) is a ``Rescaling`` layer, so the
    saved model needs no custom code and loads in Keras safe mode.
    """
    size = config.input_size
    if weights == RANDOM:
        keras.utils.set_random_seed(seed)
    cnn = keras.applications.InceptionV3(
        include_top=False,
        weights=IMAGENET if weights == IMAGENET else None,
        input_shape=(size, size, 3),
        pooling="avg",
    )
    if weights not in (RANDOM, IMAGENET, None):
        load_weights_file(cnn, weights)
    frames = keras.Input((size, size, 3), dtype="uint8", name="frames")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="inception_preprocess")(frames)
    features = cnn(x)
    return keras.Model(frames, features, name="backbone")


def load_weights_file(cnn: keras.Model, uri: str) -> None:
    """Load InceptionV3 (no top) weights from a local or ``s3://`` file.

    Accepts Keras 3 ``.weights.h5`` files and the legacy ``.h5`` files that Keras publishes.
    """
    path = fetch(uri)
    try:
        cnn.load_weights(str(path))
    except (ValueError, OSError) as err:
        raise ValueError(f"{uri} is not an InceptionV3 (no top) weights file: {err}") from err
