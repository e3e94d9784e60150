"""The detector: backbone and head built under a tf.distribute strategy, scoring batches of
windows drawn from many videos with one backbone call per batch."""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf

from model.backbone import RANDOM, build_backbone
from model.config import DetectorConfig
from model.head import build_head
from model.litert import LiteModel
from model.runtime import RuntimePlan, dtype_policy, replica_devices


def make_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """MirroredStrategy over several local GPUs (or the given devices), else one device.

    On a CPU-only machine this is TensorFlow's default strategy.
    """
    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices)
    if len(devices) == 1:
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.get_strategy()


class Detector:
    """Scores windows: uint8 frames [B, T, S, S, 3] with mask [B, T] -> fake probability [B].

    With ``lite_backbone`` (an int8 LiteRT twin of ``backbone``, see ``model.quantize``), frame
    features come from it instead of the Keras backbone; the head always runs in Keras.
    """

    def __init__(
        self,
        config: DetectorConfig,
        backbone: tf.keras.Model,
        head: tf.keras.Model,
        strategy: tf.distribute.Strategy,
        weights_source: str,
        runtime: RuntimePlan | None = None,
        lite_backbone: LiteModel | None = None,
    ) -> None:
        self.config = config
        self.backbone = backbone
        self.head = head
        self.strategy = strategy
        self.weights_source = weights_source
        self.runtime = runtime or RuntimePlan()
        self.lite_backbone = lite_backbone
        # XLA for the backbone only: the head is tiny, and its LSTMs use cuDNN kernels on GPUs.
        backbone.jit_compile = self.runtime.jit_compile
        self._devices = replica_devices(strategy)

    @classmethod
    def build(
        cls,
        config: DetectorConfig,
        weights: str = RANDOM,
        strategy: tf.distribute.Strategy | None = None,
        seed: int = 0,
        runtime: RuntimePlan | None = None,
    ) -> Detector:
        """A new detector; the backbone computes in ``runtime``'s precision, the head in
        float32 (its variables are float32 either way)."""
        strategy = strategy or make_strategy()
        runtime = runtime or RuntimePlan()
        with strategy.scope():
            with dtype_policy(runtime.precision):
                backbone = build_backbone(config.backbone, weights, seed=seed)
            head = build_head(
                config.head, config.sampling.frames_per_window, config.backbone.feature_dim
            )
        return cls(config, backbone, head, strategy, weights, runtime)

    def with_runtime(self, runtime: RuntimePlan) -> Detector:
        """The same models run another way; XLA takes effect only on models not yet called."""
        return Detector(
            self.config,
            self.backbone,
            self.head,
            self.strategy,
            self.weights_source,
            runtime,
            self.lite_backbone,
        )

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def chunk(self) -> int:
        """The one batch shape the models ever see: a fixed number of rows per replica."""
        return self.runtime.chunk_per_replica * self.replicas

    def _call(self, model: tf.keras.Model | LiteModel, chunk: tuple[np.ndarray, ...]) -> np.ndarray:
        """``model`` over one chunk of rows, split evenly over the replicas, as float32.

        A LiteRT backbone runs on the CPU, outside the strategy, over the whole chunk.

        This is Keras' own predict function (with XLA where the model asks for it), called on
        the chunk directly: ``model.predict`` would first build a ``tf.data`` pipeline around
        it on every call, which cost a third of the backbone's speed on a 2-core CPU.
        """
        if isinstance(model, LiteModel):
            (frames,) = chunk
            return model(frames=frames)
        rows, devices = self.runtime.chunk_per_replica, self._devices

        def shard(context: tf.distribute.experimental.ValueContext) -> tuple:
            replica = context.replica_id_in_sync_group
            # Each replica's rows start on its own device, where XLA expects them.
            with tf.device(devices[replica]) if devices else contextlib.nullcontext():
                parts = [tf.constant(v[replica * rows : (replica + 1) * rows]) for v in chunk]
            return (parts if len(parts) > 1 else parts[0],)

        step = self.strategy.experimental_distribute_values_from_function(shard)
        model.make_predict_function()  # built once, on the first call
        return np.asarray(model.predict_function([step]), dtype=np.float32)

    def predict(self, model: tf.keras.Model | LiteModel, *inputs: np.ndarray) -> np.ndarray:
        """``model`` over inputs padded to a multiple of ``chunk`` rows, one chunk a call.

        A fixed batch shape means the prediction function is traced once, not once per batch
        size, and every replica of a mirrored strategy gets an equal share. A LiteRT model takes
        any batch size at the same speed per row, so its last call is not padded: padding
        cost the int8 scan's adaptive first pass (80 frames a video) a fifth more work.
        """
        n = len(inputs[0])
        padded = 0 if isinstance(model, LiteModel) else -n % self.chunk
        if padded:
            inputs = tuple(
                np.concatenate([v, np.zeros((padded, *v.shape[1:]), v.dtype)]) for v in inputs
            )
        outputs = [
            self._call(model, tuple(v[i : i + self.chunk] for v in inputs))
            for i in range(0, n + padded, self.chunk)
        ]
        return np.concatenate(outputs)[:n]

    def frame_features(self, frames: np.ndarray) -> np.ndarray:
        """[N, S, S, 3] uint8 -> [N, D] float32, in one batched backbone call."""
        if len(frames) == 0:
            return np.zeros((0, self.config.backbone.feature_dim), np.float32)
        return self.predict(self.lite_backbone or self.backbone, frames)

    def window_features(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Features for the real frames of every window; padded slots stay zero."""
        features = np.zeros((*mask.shape, self.config.backbone.feature_dim), np.float32)
        features[mask] = self.frame_features(frames[mask])
        return features

    def head_scores(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if len(features) == 0:
            return np.zeros(0, np.float32)
        return self.predict(self.head, features, mask).reshape(-1)

    def score_windows(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.head_scores(self.window_features(frames, mask), mask)

    def warm_up(self) -> None:
        """Trace both models for the one batch shape now, before the first real batch waits."""
        shape, size = (1, self.config.sampling.frames_per_window), self.config.backbone.input_size
        self.score_windows(np.zeros((*shape, size, size, 3), np.uint8), np.ones(shape, bool))
