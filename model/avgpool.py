"""InceptionV3's average pools rewritten as operators that XNNPACK runs in int8.

XNNPACK, LiteRT's CPU delegate, has no int8 average pooling: in an int8 InceptionV3 the nine
3x3 average pools of its mixed blocks fall back to LiteRT's own kernels and cut the delegated
graph into ten pieces, which made the int8 backbone a third slower than the same graph without
them (measured in ``docs/performance.md``).

A 3x3 stride-1 average pool with ``same`` padding that leaves the padding out of the average
(Keras' ``AveragePooling2D``) is the same as a depthwise convolution whose kernel is 1/9
everywhere (zeros in the padding count towards it), times a constant map that is 1 inside,
9/6 along the edges and 9/4 in the corners. Both run in XNNPACK in int8. The rewrite is exact
in float (``tests/test_cheaper.py``); in int8, the map is one more rounded operator.
"""

from __future__ import annotations

import keras
import numpy as np


def border_counts(size: int, pool: int) -> np.ndarray:
    """How many of a ``pool``-wide ``same`` window's positions fall inside a line of ``size``."""
    reach = pool // 2
    at = np.arange(size)
    return np.minimum(at + reach, size - 1) - np.maximum(at - reach, 0) + 1


class DepthwiseAveragePool(keras.layers.Layer):
    """An odd-sized, stride-1, ``same`` average pool that leaves padding out, as a depthwise
    convolution and a constant map."""

    def __init__(self, pool_size: tuple[int, int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.pool_size = tuple(pool_size)

    def build(self, input_shape) -> None:
        height, width, channels = input_shape[1:]
        rows, cols = self.pool_size
        self._kernel = np.full((rows, cols, channels, 1), 1.0 / (rows * cols), np.float32)
        inside = np.outer(border_counts(height, rows), border_counts(width, cols))
        self._map = (rows * cols / inside).astype(np.float32)[None, :, :, None]

    def call(self, x):
        pooled = keras.ops.depthwise_conv(x, self._kernel, strides=1, padding="same")
        return pooled * self._map


def rewritable(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` is an average pool this module rewrites."""
    if not isinstance(layer, keras.layers.AveragePooling2D):
        return False
    config = layer.get_config()
    rows, cols = config["pool_size"]
    return (
        tuple(config["strides"]) == (1, 1)
        and config["padding"] == "same"
        and rows % 2 == 1
        and cols % 2 == 1
    )


def without_average_pools(backbone: keras.Model) -> keras.Model:
    """A copy of ``backbone`` (weights shared) whose rewritable average pools are depthwise
    convolutions; every other layer is the original."""

    def swap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=swap)
        if rewritable(layer):
            return DepthwiseAveragePool(layer.get_config()["pool_size"], name=layer.name)
        return layer

    return keras.models.clone_model(backbone, clone_function=swap)
