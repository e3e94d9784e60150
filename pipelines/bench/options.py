"""`deeptrust bench --options`: each option of the fast path against its alternative.

Model options run over the same sample of decoded windows, one after another in this process.
TensorFlow sizes its thread pools and chooses its CPU kernels (oneDNN or Eigen) once, when it
starts, so those options run in fresh processes, the default included. Each row gives frames per
second and the ratio to its baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import tensorflow as tf

from model.bundle import load_bundle
from model.runtime import FLOAT32, PRECISIONS
from pipelines.bench.memory import in_fresh_process
from pipelines.bench.throughput import Rate, Workspace, measure_model, measure_scan, ratio
from pipelines.environment import environment

# Windows every model option runs over: enough for ten model calls' worth of frames on a CPU.
SAMPLE_WINDOWS = 16
CHUNKS = (16, 32, 64)
# (intra-op, inter-op) thread pool sizes; (0, 0) is TensorFlow's default, one per core.
THREADS = ((0, 0), (2, 1), (1, 2), (4, 2))
SINGLE_WORKER = ("--direct_num_workers=1",)
# TensorFlow uses oneDNN's CPU kernels by default only on CPUs with AVX512_VNNI, AVX512_BF16 or
# AMX; this variable, read when TensorFlow starts, turns them on ("1") or off ("0") anywhere.
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


def row(option: str, value: Any, measure: str, rate: Rate, baseline: Rate, named: str) -> dict:
    return {
        "option": option,
        "value": str(value),
        "measure": measure,
        "fps": round(rate.fps, 2),
        "ratio": ratio(rate.fps, baseline.fps),
        "baseline": named,
    }


def precision_rows(space: Workspace, frames: np.ndarray, mask: np.ndarray, batch: int) -> list:
    rates = {}
    for precision in PRECISIONS:
        detector, _ = load_bundle(space.bundle, precision=precision)
        rates[precision] = measure_model(detector, frames, mask, batch)
    return [
        row("precision", name, "model_fps", rate, rates[FLOAT32], FLOAT32)
        for name, rate in rates.items()
    ]


def chunk_rows(space: Workspace, frames: np.ndarray, mask: np.ndarray, batch: int) -> list:
    fast = space.detector
    default = fast.runtime.chunk_per_replica
    rates = {
        chunk: measure_model(
            fast.with_runtime(replace(fast.runtime, chunk_per_replica=chunk)), frames, mask, batch
        )
        for chunk in sorted({*CHUNKS, default})
    }
    named = f"{default} rows"
    return [
        row("chunk", f"{c} rows", "model_fps", r, rates[default], named) for c, r in rates.items()
    ]


def xla_rows(space: Workspace, frames: np.ndarray, mask: np.ndarray, batch: int) -> list:
    fast = space.detector
    fresh, _ = load_bundle(space.bundle, precision=fast.runtime.precision)
    xla = fresh.with_runtime(replace(fresh.runtime, jit_compile=True))
    base = measure_model(fast, frames, mask, batch)
    rate = measure_model(xla, frames, mask, batch)  # its warm-up call compiles
    named = f"jit_compile={fast.runtime.jit_compile}"
    return [row("xla", "jit_compile=True", "model_fps", rate, base, named)]


def threaded_model_fps(
    bundle: str, precision: str, threads: tuple[int, int], frames: np.ndarray, mask: np.ndarray
) -> tuple[int, float]:
    """In a fresh process: size TensorFlow's thread pools, then time the model."""
    intra, inter = threads
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    detector, _ = load_bundle(bundle, precision=precision)
    rate = measure_model(detector, frames, mask, len(frames))
    return rate.frames, rate.seconds


def onednn_rows(space: Workspace, frames: np.ndarray, mask: np.ndarray) -> list:
    precision = space.detector.runtime.precision
    rates = {}
    for value in ("0", "1"):
        with environment({ONEDNN_ENV: value}):
            rates[value] = Rate(
                *in_fresh_process(threaded_model_fps, space.bundle, precision, (0, 0), frames, mask)
            )
    named = f"{ONEDNN_ENV}=0"
    return [
        row("onednn", f"{ONEDNN_ENV}={v}", "model_fps", r, rates["0"], named)
        for v, r in rates.items()
    ]


def thread_rows(space: Workspace, frames: np.ndarray, mask: np.ndarray) -> list:
    precision = space.detector.runtime.precision
    rates = {
        threads: Rate(
            *in_fresh_process(threaded_model_fps, space.bundle, precision, threads, frames, mask)
        )
        for threads in THREADS
    }
    named = "TensorFlow's default"
    return [
        row("threads", f"intra {a}, inter {b}", "model_fps", r, rates[(0, 0)], named)
        for (a, b), r in rates.items()
    ]


def measure_options(
    space: Workspace,
    frames: np.ndarray,
    mask: np.ndarray,
    batch: int,
    scanned: Rate,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every option's row: precision, batch chunk, XLA, thread pools, oneDNN, decode overlap."""
    frames, mask = frames[:SAMPLE_WINDOWS], mask[:SAMPLE_WINDOWS]
    rows = []
    progress("bench options: precision")
    rows += precision_rows(space, frames, mask, batch)
    progress("bench options: batch chunk per replica")
    rows += chunk_rows(space, frames, mask, batch)
    progress("bench options: XLA")
    rows += xla_rows(space, frames, mask, batch)
    progress("bench options: TensorFlow thread pools")
    rows += thread_rows(space, frames, mask)
    progress("bench options: oneDNN CPU kernels")
    rows += onednn_rows(space, frames, mask)
    progress("bench options: the scan on one worker thread")
    single = measure_scan(space, space.detector.runtime.precision, SINGLE_WORKER).rate
    rows.append(row("scan", "1 worker thread", "scan_fps", single, scanned, "the fast path"))
    return rows
