"""A LiteRT (TensorFlow Lite) model run with NumPy alone: the int8 backbone of a scan, and every
part of an exported edge detector (``model.edge``).

This module imports no TensorFlow, so an edge device needs only ``ai-edge-litert`` and NumPy.
LiteRT runs the model's float and int8 operators through XNNPACK, its default CPU delegate.
An interpreter is not thread-safe: calls from several threads take turns, each using every core.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np


class LiteModel:
    """A ``.tflite`` model: named inputs of any batch size -> its first output, as float32."""

    def __init__(self, model: str | Path | bytes, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        source = (
            {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
        )
        self._interpreter = Interpreter(**source, num_threads=threads or os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._batch: int | None = None
        inputs = self._interpreter.get_input_details()
        # Inputs are matched by name: the converter orders them as it likes.
        self._inputs = {_plain_name(d["name"]): d for d in inputs}
        self._output = self._interpreter.get_output_details()[0]["index"]

    @property
    def input_names(self) -> list[str]:
        return sorted(self._inputs)

    def __call__(self, **inputs: np.ndarray) -> np.ndarray:
        if set(inputs) != set(self._inputs):
            raise ValueError(f"the model takes inputs {self.input_names}, not {sorted(inputs)}")
        batch = len(next(iter(inputs.values())))
        with self._lock:
            if batch != self._batch:
                for detail in self._inputs.values():
                    shape = [batch, *detail["shape_signature"][1:]]
                    self._interpreter.resize_tensor_input(detail["index"], shape)
                self._interpreter.allocate_tensors()
                self._batch = batch
            for name, detail in self._inputs.items():
                value = np.ascontiguousarray(inputs[name], dtype=detail["dtype"])
                self._interpreter.set_tensor(detail["index"], value)
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._output), dtype=np.float32)


def _plain_name(name: str) -> str:
    """``serving_default_frames:0`` -> ``frames``: the Keras input's own name."""
    name = name.split(":")[0]
    return name.removeprefix("serving_default_")
