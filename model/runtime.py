"""How the detector runs on the hardware at hand: numeric precision, XLA and the batch shape.

These are runtime choices, never bundle settings: weights are stored in float32 whatever the
precision they later run in, so one bundle (and one ``model_version``) serves CPUs and GPUs.

- **Precision:** ``float32``; ``mixed_bfloat16`` (CPUs with AVX512_BF16 or AMX); ``mixed_float16``
  (GPUs). Mixed policies compute in 16 bits and keep float32 variables. ``auto`` picks
  ``mixed_float16`` on GPUs, ``mixed_bfloat16`` on CPUs that have bfloat16 instructions, else
  ``float32``. ``int8`` runs the backbone quantized in LiteRT (``model.quantize``) and the head in
  float32; it is never picked by ``auto``, and rows it scores carry their own model version
  (``scored_version``), since its scores differ slightly from the float ones.
- **XLA:** on GPUs only; on CPUs it brought no gain.
- **Batch shape:** every model call is padded to ``chunk_per_replica`` rows per replica. On a CPU
  that is :data:`CPU_CHUNK_PER_REPLICA`; on a GPU it grows with the device's memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # TensorFlow loads only when a model is built, so the CLI stays quick
    import tensorflow as tf

FLOAT32 = "float32"
MIXED_BFLOAT16 = "mixed_bfloat16"
MIXED_FLOAT16 = "mixed_float16"
INT8 = "int8"
AUTO = "auto"
PRECISIONS = (FLOAT32, MIXED_BFLOAT16, MIXED_FLOAT16, INT8)

# Rows per replica in every model call on a CPU (frames for the backbone, windows for the head).
CPU_CHUNK_PER_REPLICA = 32
# GPU rows per replica by device memory: (at least this many GiB, rows). InceptionV3 at 224 px
# needs well under 40 MiB of activations a frame in 16 bits, so even the largest chunk leaves
# most of a 40 GiB card free for decoded frames waiting their turn.
GPU_CHUNKS_BY_GIB = ((40, 256), (20, 128), (10, 64), (0, 32))
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class RuntimePlan:
    """How the models of one detector run: precision, XLA, and rows per replica per call."""

    precision: str = FLOAT32
    jit_compile: bool = False
    chunk_per_replica: int = CPU_CHUNK_PER_REPLICA

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"unknown precision {self.precision!r}; choose {AUTO} or one of {PRECISIONS}"
            )
        if self.chunk_per_replica < 1:
            raise ValueError("chunk_per_replica must be at least 1")


def cpu_has_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes in bfloat16 natively (AVX512_BF16 or AMX), as Linux reports it."""
    try:
        flags = cpuinfo.read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in _CPU_BF16_FLAGS)


def resolve_precision(name: str, on_gpu: bool) -> str:
    """``name`` itself, or for ``auto`` the fastest precision this hardware computes natively."""
    if name == AUTO:
        if on_gpu:
            return MIXED_FLOAT16
        return MIXED_BFLOAT16 if cpu_has_bfloat16() else FLOAT32
    return name


def scored_version(model_version: str, precision: str) -> str:
    """The model version a row records: the bundle's, marked when an int8 backbone scored it."""
    return f"{model_version}-{INT8}" if precision == INT8 else model_version


def chunk_for_memory(memory_bytes: int | None) -> int:
    """Rows per replica for a GPU with ``memory_bytes`` of memory; None means a CPU."""
    if memory_bytes is None:
        return CPU_CHUNK_PER_REPLICA
    gib = memory_bytes / 2**30
    return next(rows for floor, rows in GPU_CHUNKS_BY_GIB if gib >= floor)


def replica_devices(strategy: tf.distribute.Strategy) -> list[str]:
    """The device of each replica, in order; empty for the default strategy (no placement)."""
    try:
        return list(strategy.extended.worker_devices)
    except RuntimeError:
        return []


def gpu_memory_bytes(strategy: tf.distribute.Strategy) -> int | None:
    """The smallest memory TensorFlow may use on the strategy's GPUs, or None without GPUs."""
    import tensorflow as tf

    # The default strategy has no devices of its own: ops land on the first GPU, if there is one.
    devices = replica_devices(strategy) or [
        d.name for d in tf.config.list_logical_devices("GPU")[:1]
    ]
    specs = [tf.DeviceSpec.from_string(d) for d in devices]
    gpus = {spec.device_index or 0 for spec in specs if spec.device_type == "GPU"}
    if not gpus:
        return None
    from tensorflow.python.client import device_lib  # the one API that reports device memory

    limits = [
        device.memory_limit
        for device in device_lib.list_local_devices()
        if device.device_type == "GPU"
        and (tf.DeviceSpec.from_string(device.name).device_index or 0) in gpus
    ]
    return min(limits) if limits else None


def plan_runtime(precision: str, strategy: tf.distribute.Strategy) -> RuntimePlan:
    """The plan for ``strategy``'s devices: XLA and a memory-sized batch on GPUs."""
    memory = gpu_memory_bytes(strategy)
    on_gpu = memory is not None
    return RuntimePlan(
        precision=resolve_precision(precision, on_gpu),
        jit_compile=on_gpu,
        chunk_per_replica=chunk_for_memory(memory),
    )


@contextlib.contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Build models under ``precision``'s Keras policy, then restore the previous one.

    Keras keeps its policy per thread, so a model built here never changes the precision of
    models other threads build meanwhile (such as MTCNN's).
    """
    import keras

    previous = keras.config.dtype_policy()
    # An int8 detector's Keras backbone is the float32 model its LiteRT twin is made from.
    keras.config.set_dtype_policy(FLOAT32 if precision == INT8 else precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
