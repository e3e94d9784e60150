"""Tune the backbone's last Inception blocks on real and self-blended frames.

A frozen backbone only describes what its weights already see; blending traces (a soft boundary,
a colour and frequency step) are learnt by training convolutions on them. ``--fine-tune-from
mixedN`` trains Inception block N and every block after it, frame by frame, with a small
classifier on the pooled features; the blocks before stay as they are. Their output (the input
of block N) is computed once per frame, so each epoch costs only the tuned blocks. ``all``
trains the whole network, preprocessing included in every step: far slower on a CPU.

Training runs under the detector's tf.distribute strategy, in the backbone's own precision
(``mixed_bfloat16`` where the CPU computes in bfloat16). After every epoch the tuned weights
are written to a checkpoint folder, and a run started again with the same settings goes on from
the last finished epoch (with a fresh optimizer state).

Normalization layers keep pretrained statistics (inference mode); an untrained backbone's
activations shrink block by block, so there they learn their statistics with the rest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from model.backbone import RANDOM
from model.detector import Detector
from model.progress import eta_text

ALL = "all"
INCEPTION = "inception_v3"
BLOCKS = tuple(f"mixed{i}" for i in range(1, 11))
CHECKPOINT_WEIGHTS = "frame_classifier.weights.h5"
CHECKPOINT_STATE = "finetune.json"


@dataclass(frozen=True)
class FineTuneOptions:
    start: str  # "mixedN" or "all"
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.start != ALL and self.start not in BLOCKS:
            raise ValueError(
                f"--fine-tune-from must be {ALL} or an Inception block mixed1..mixed10, "
                f"not {self.start!r}"
            )
        if self.epochs < 1:
            raise ValueError("fine-tuning needs at least one epoch")


def split_backbone(detector: Detector, start: str) -> tuple[keras.Model | None, keras.Model]:
    """(frozen part, tuned part) of the detector's InceptionV3 for ``start``.

    For a block, the frozen part maps preprocessed frames ([-1, 1]) to the block's input and the
    tuned part maps that to pooled features; they share layers with the detector's backbone, so
    training the tuned part trains the backbone. For ``all`` there is no frozen part and the
    tuned part is the whole backbone, from uint8 frames.
    """
    if start == ALL:
        return None, detector.backbone
    cnn = detector.backbone.get_layer(INCEPTION)
    before = cnn.get_layer(f"mixed{int(start.removeprefix('mixed')) - 1}").output
    return keras.Model(cnn.input, before), keras.Model(before, cnn.output)


def tune_backbone(
    detector: Detector,
    frames: np.ndarray,
    labels: np.ndarray,
    options: FineTuneOptions,
    checkpoint: Path,
    progress: Callable[[str], None] = print,
) -> dict[str, object]:
    """Train the backbone from ``options.start`` on uint8 frames [N, S, S, 3] with labels [N]
    (1 for fake); returns what the bundle records about it."""
    frozen, tuned = split_backbone(detector, options.start)
    cnn = detector.backbone.get_layer(INCEPTION)
    keras.utils.set_random_seed(options.seed)
    with detector.strategy.scope():
        tuned.trainable = True
        pretrained = detector.weights_source != RANDOM
        for layer in cnn.layers:
            # Pretrained statistics would drift on a few thousand crops: their normalization
            # layers stay in inference mode. An untrained network has no statistics worth
            # keeping (its activations shrink block by block), so its layers learn them.
            if isinstance(layer, keras.layers.BatchNormalization) and pretrained:
                layer.trainable = False
        features = keras.Input(tuned.input_shape[1:], dtype=tuned.input.dtype)
        fake = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="frame_fake")(
            tuned(features)
        )
        classifier = keras.Model(features, fake, name="frame_classifier")
        classifier.compile(
            optimizer=keras.optimizers.Adam(options.learning_rate),
            loss="binary_crossentropy",
            metrics=[keras.metrics.AUC(name="auc")],
        )
    settings = {"frames": len(frames), "fake_frames": int(labels.sum()), **vars(options)}
    state = {"settings": settings, "epochs_done": 0, "last_epoch": {}}
    state_file = checkpoint / CHECKPOINT_STATE
    if state_file.is_file():
        saved = json.loads(state_file.read_text())
        if saved.get("settings") == settings:
            classifier.load_weights(checkpoint / CHECKPOINT_WEIGHTS)
            state = saved
            progress(f"fine-tune: resuming after epoch {state['epochs_done']} of {options.epochs}")
    if state["epochs_done"] < options.epochs:
        inputs = frames
        if frozen is not None:
            progress(f"fine-tune: computing the input of {options.start} for {len(frames)} frames")
            inputs = detector.predict(frozen, frames.astype(np.float32) / 127.5 - 1.0)
        started, first = time.monotonic(), state["epochs_done"]
        for epoch in range(state["epochs_done"], options.epochs):
            keras.utils.set_random_seed(options.seed + epoch)
            result = classifier.fit(
                inputs, labels.astype(np.float32), batch_size=options.batch_size, verbose=0
            )
            state["epochs_done"] = epoch + 1
            state["last_epoch"] = {k: float(v[-1]) for k, v in result.history.items()}
            shown = " ".join(f"{k} {v:.4f}" for k, v in sorted(state["last_epoch"].items()))
            eta = eta_text(started, epoch + 1 - first, options.epochs - first)
            progress(f"fine-tune: epoch {epoch + 1}/{options.epochs}: {shown} ({eta})")
            checkpoint.mkdir(parents=True, exist_ok=True)
            classifier.save_weights(checkpoint / CHECKPOINT_WEIGHTS)
            state_file.write_text(json.dumps(state))
    trained = [layer for layer in (tuned if frozen else cnn).layers if layer.trainable_weights]
    return {
        "from": options.start,
        "epochs": options.epochs,
        "frames": len(frames),
        "fake_frames": int(labels.sum()),
        "layers_trained": len(trained),
        "weights_trained": int(sum(np.prod(w.shape) for w in tuned.trainable_weights)),
        "learning_rate": options.learning_rate,
        "last_epoch": state["last_epoch"],
    }
