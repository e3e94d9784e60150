"""The detector's models in LiteRT: an int8 backbone for cheaper verdicts, and the edge export.

- **Backbone, int8:** post-training quantization (weights and activations in int8, uint8 frames
  in, float32 features out), calibrated on frames from the bundle's own training data, which
  the bundle keeps (``calibration.npz``). XNNPACK runs it with AVX512_VNNI's int8 dot products
  where the CPU has them; its average pools are rewritten first (``model.avgpool``) so that
  XNNPACK runs the whole graph.
- **Backbone, float:** the same graph in float32, for edge devices without fast int8.
- **Head, float:** Keras 3's LSTM does not convert to LiteRT's fused LSTM operator, and the
  TensorFlow ops it converts to otherwise (Flex) do not run in ``ai-edge-litert``. A copy of the
  head with its LSTMs unrolled over the window's fixed length converts to plain builtin operators
  (matrix products, activations, and a select for the frame mask) with the same weights.

A scan's int8 backbone is made once per bundle version and cached (``int8_backbone``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from model.avgpool import without_average_pools
from model.config import DetectorConfig
from model.errors import VideoError
from model.hashing import sha256_file
from model.storage import user_cache_dir
from model.video import WindowSampler

# Frames a bundle keeps for calibration: enough to settle each layer's activation range, small
# enough (under 10 MB at 224 px) to travel in every bundle.
CALIBRATION_FRAMES = 64
# Videos whose frames calibrate a bundle's int8 backbone.
CALIBRATION_VIDEOS = 8
# Calibration frames are fed this many at a time.
_CALIBRATION_BATCH = 8
# How int8 backbones are made; a cached one made another way is made again. 2: average pools
# rewritten for XNNPACK.
INT8_RECIPE = 2


def pick_calibration(windows: Sequence[tuple[np.ndarray, np.ndarray]], count: int) -> np.ndarray:
    """Up to ``count`` frames spread evenly over the real (unmasked) frames of ``windows``,
    given as (frames [W, T, S, S, 3], mask [W, T]) per video."""
    frames = np.concatenate([f[m] for f, m in windows])
    if len(frames) == 0:
        raise ValueError("calibration needs at least one decoded frame")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    return frames[picks]


def calibration_frames(
    config: DetectorConfig, paths: Sequence[str], progress: Callable[[str], None]
) -> np.ndarray:
    """Frames for calibrating an int8 backbone: spread over a few of ``paths`` (the training
    videos), cropped as the scan crops them."""
    step = max(1, len(paths) // CALIBRATION_VIDEOS)
    sampler = WindowSampler(config)
    windows = []
    for path in list(paths)[::step][:CALIBRATION_VIDEOS]:
        try:
            sampled = sampler.sample(path)
        except VideoError:
            continue
        windows.append((sampled.frames, sampled.mask))
    frames = pick_calibration(windows, CALIBRATION_FRAMES)
    progress(f"int8 calibration: {len(frames)} frames from {len(windows)} videos, for int8")
    return frames


def _quietly_convert(converter: tf.lite.TFLiteConverter) -> bytes:
    """Convert, keeping the converter's notes (it prints the exported graph's signature on
    stdout) off stdout, whose last line is a command's JSON."""
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def convert_backbone(backbone: keras.Model, calibration: np.ndarray | None = None) -> bytes:
    """The backbone as a LiteRT model: int8 calibrated on ``calibration`` frames, with its
    average pools rewritten for XNNPACK, or float32 when none are given."""
    if calibration is None:
        return _quietly_convert(tf.lite.TFLiteConverter.from_keras_model(backbone))
    return quantize(without_average_pools(backbone), calibration)


def quantize(model: keras.Model, calibration: np.ndarray) -> bytes:
    """``model`` (uint8 frames in) in int8, weights and activations, calibrated on
    ``calibration`` frames; float32 out."""
    if len(calibration) == 0:
        raise ValueError("int8 calibration needs at least one frame")

    def representative() -> Iterator[list[np.ndarray]]:
        for start in range(0, len(calibration), _CALIBRATION_BATCH):
            yield [calibration[start : start + _CALIBRATION_BATCH].astype(np.uint8)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return _quietly_convert(converter)


def unrolled_head(head: keras.Model) -> keras.Model:
    """A copy of ``head`` whose LSTMs are unrolled over the window, with the same weights."""
    config = head.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "LSTM":
            layer["config"]["unroll"] = True
    twin = keras.Model.from_config(config)
    twin.set_weights(head.get_weights())
    for layer in twin.layers:
        # Normalization computes from its adapted statistics only once told they are final.
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()
    return twin


def convert_head(head: keras.Model) -> bytes:
    """The sequence head as a float32 LiteRT model of builtin operators only."""
    converter = tf.lite.TFLiteConverter.from_keras_model(unrolled_head(head))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return _quietly_convert(converter)


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(name, path)


def int8_backbone(model_version: str, backbone: keras.Model, calibration: np.ndarray) -> Path:
    """The bundle's int8 backbone, from the cache or quantized now and cached.

    The cache holds ``<model_version>-int8.tflite`` beside a record of its sha256 and the
    TensorFlow version and recipe that made it; a file that does not match its record is made
    again, so a damaged or outdated cache costs a conversion, never a wrong score.
    """
    cache = user_cache_dir("litert")
    model = cache / f"{model_version}-int8.tflite"
    record = cache / f"{model_version}-int8.json"
    expected = {"model_version": model_version, "tensorflow": tf.__version__, "recipe": INT8_RECIPE}
    with contextlib.suppress(OSError, ValueError):
        known: dict[str, Any] = json.loads(record.read_text())
        if known.get("sha256") == sha256_file(model) and all(
            known.get(k) == v for k, v in expected.items()
        ):
            return model
    write_atomically(model, convert_backbone(backbone, calibration))
    body = {**expected, "sha256": sha256_file(model), "calibration_frames": len(calibration)}
    write_atomically(record, (json.dumps(body, indent=2) + "\n").encode())
    return model
