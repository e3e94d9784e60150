"""Runtime choices: precision, XLA and batch shape, and bfloat16 scores against float32 ones."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from model import runtime
from model.bundle import read_manifest
from model.runtime import (
    CPU_CHUNK_PER_REPLICA,
    MIXED_BFLOAT16,
    RuntimePlan,
    chunk_for_memory,
    cpu_has_bfloat16,
    dtype_policy,
    plan_runtime,
    resolve_precision,
)
from model.video import WindowSampler
from pipelines.scan.inference import WindowModelHandler

GIB = 2**30


@pytest.mark.unit
@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx512f avx512_bf16 fma", True), ("fpu amx_bf16 amx_tile", True), ("fpu avx2", False)],
)
def test_cpu_bfloat16_support_comes_from_the_cpu_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor : 0\nflags : {flags}\n")
    assert cpu_has_bfloat16(cpuinfo) is expected


@pytest.mark.unit
def test_no_cpuinfo_means_no_bfloat16(tmp_path):
    assert cpu_has_bfloat16(tmp_path / "missing") is False


@pytest.mark.unit
@pytest.mark.parametrize(
    ("bf16_cpu", "on_gpu", "expected"),
    [
        (True, True, "mixed_float16"),
        (False, True, "mixed_float16"),
        (True, False, "mixed_bfloat16"),
        (False, False, "float32"),
    ],
)
def test_auto_picks_what_the_hardware_computes_natively(monkeypatch, bf16_cpu, on_gpu, expected):
    monkeypatch.setattr(runtime, "cpu_has_bfloat16", lambda: bf16_cpu)
    assert resolve_precision("auto", on_gpu) == expected
    assert resolve_precision("float32", on_gpu) == "float32"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("memory", "rows"),
    [
        (None, CPU_CHUNK_PER_REPLICA),
        (8 * GIB, 32),
        (16 * GIB, 64),
        (24 * GIB, 128),
        (80 * GIB, 256),
    ],
)
def test_gpu_batch_grows_with_device_memory(memory, rows):
    assert chunk_for_memory(memory) == rows


@pytest.mark.unit
def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision"):
        RuntimePlan(precision="float8")


@pytest.mark.component
def test_a_cpu_strategy_gets_no_xla_and_the_cpu_batch():
    plan = plan_runtime("float32", tf.distribute.get_strategy())
    assert plan == RuntimePlan("float32", jit_compile=False, chunk_per_replica=32)


@pytest.mark.component
def test_the_policy_is_restored_and_never_leaks_into_other_threads():
    seen = {}

    def build_elsewhere() -> None:
        seen["other thread"] = keras.layers.Dense(1).dtype_policy.name

    with dtype_policy(MIXED_BFLOAT16):
        inside = keras.layers.Dense(1).dtype_policy.name
        thread = threading.Thread(target=build_elsewhere)
        thread.start()
        thread.join()
    assert inside == MIXED_BFLOAT16
    assert seen["other thread"] == "float32"
    assert keras.layers.Dense(1).dtype_policy.name == "float32"


@pytest.mark.e2e
def test_bfloat16_scores_are_close_to_float32_scores(bundle, corpus):
    """The scan's handler loads the fast path; its verdicts barely move."""
    version = read_manifest(bundle)["model_version"]
    exact = WindowModelHandler(str(bundle), version, 4).load_model().result()
    fast = WindowModelHandler(str(bundle), version, 4, MIXED_BFLOAT16).load_model().result()
    inception = fast.backbone.get_layer("inception_v3")
    assert inception.dtype_policy.name == MIXED_BFLOAT16
    assert all(w.dtype == "float32" for w in inception.weights), "weights stay float32"
    sampler = WindowSampler(exact.config)
    videos = [sampler.sample(str(path)) for path in sorted(corpus.rglob("*.mp4"))[:4]]
    frames = np.concatenate([v.frames for v in videos])
    mask = np.concatenate([v.mask for v in videos])
    expected = exact.score_windows(frames, mask)
    got = fast.score_windows(frames, mask)
    assert expected.std() > 0.05, "the trained head separates windows"
    # A random backbone's features are tiny and the head's normalization scales them up, so
    # bfloat16's rounding shows more here than with ImageNet weights; still a few hundredths.
    np.testing.assert_allclose(got, expected, atol=0.05)
    assert np.abs(got - expected).mean() < 0.01


@pytest.mark.e2e
def test_the_gpu_path_runs_mirrored_with_xla_and_float16_on_two_cpu_devices(bundle):
    """What a multi-GPU worker runs (MirroredStrategy, XLA, mixed_float16), on two CPU devices."""
    from dataclasses import replace

    from model.bundle import load_bundle
    from model.detector import make_strategy

    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    exact, _ = load_bundle(str(bundle), strategy=make_strategy([]))
    gpu_like, _ = load_bundle(str(bundle), strategy=make_strategy(cpus), precision="mixed_float16")
    xla = gpu_like.with_runtime(replace(gpu_like.runtime, jit_compile=True))
    assert xla.replicas == 2 and xla.chunk == 2 * CPU_CHUNK_PER_REPLICA
    assert xla.backbone.jit_compile
    config = exact.config
    rng = np.random.default_rng(0)
    shape = (3, config.sampling.frames_per_window)
    size = config.backbone.input_size
    frames = rng.integers(0, 256, (*shape, size, size, 3), dtype=np.uint8)
    mask = np.ones(shape, bool)
    np.testing.assert_allclose(
        xla.score_windows(frames, mask), exact.score_windows(frames, mask), atol=0.02
    )
