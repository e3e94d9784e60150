"""Shared fixtures: a small synthetic corpus and a small trained bundle, made once per session.

TensorFlow is split into two logical CPU devices before anything else touches it, so tests can
run the detector under a real MirroredStrategy without a GPU.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

from model.config import (  # noqa: E402
    BackboneConfig,
    DetectorConfig,
    FaceCropConfig,
    SamplingConfig,
)

# Small enough to train in well under a minute on 2 cores, shaped like the real thing.
SMALL_CONFIG = DetectorConfig(
    sampling=SamplingConfig(frames_per_window=8, sample_fps=8.0, max_windows=4),
    face=FaceCropConfig(enabled=True),
    backbone=BackboneConfig(input_size=96),
)


@pytest.fixture(scope="session")
def small_config() -> DetectorConfig:
    return SMALL_CONFIG


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """12 synthetic videos (6 real, 6 fake), seed 1."""
    from model.synth import write_corpus

    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, 12, seed=1)
    return out


@pytest.fixture(scope="session")
def training_corpus(tmp_path_factory):
    """16 synthetic videos (8 real, 8 fake), seed 1: what the test bundle learns from."""
    from model.synth import write_corpus

    out = tmp_path_factory.mktemp("training_corpus")
    write_corpus(out, 16, seed=1)
    return out


@pytest.fixture(scope="session")
def bundle(training_corpus, tmp_path_factory):
    """A bundle trained on ``training_corpus`` with a random backbone and the small config."""
    from model.train import TrainOptions, train

    out = tmp_path_factory.mktemp("bundle") / "model"
    train(
        str(training_corpus),
        out,
        weights="random",
        config=SMALL_CONFIG,
        options=TrainOptions(epochs=30, val_fraction=0.34, seed=0),
        cache_dir=tmp_path_factory.mktemp("features"),
        progress=lambda message: None,
    )
    return out


@pytest.fixture
def bundle_with_code_in_head(bundle, tmp_path):
    """A copy of ``bundle`` whose head holds a Lambda layer (Python code), with hashes and
    ``model_version`` rewritten to match, as a careful attacker would leave it."""
    import json
    import shutil

    import keras

    from model.bundle import HEAD_FILE, MANIFEST, content_version, sha256_file

    copy = tmp_path / "code-in-head"
    shutil.copytree(bundle, copy)
    features = keras.Input((8, 2048), name="features")
    mask = keras.Input((8,), dtype="bool", name="mask")
    out = keras.layers.Lambda(lambda x: x[:, 0, :1])(features)
    keras.Model([features, mask], out).save(copy / HEAD_FILE)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["files"][HEAD_FILE] = sha256_file(copy / HEAD_FILE)
    manifest["model_version"] = content_version(manifest)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    return copy


# --- fixtures for the scan (pipelines/) ---

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def corpus30(tmp_path_factory):
    """30 synthetic videos (15 real, 15 fake), seed 3: the scan's acceptance corpus."""
    from model.synth import write_corpus

    out = tmp_path_factory.mktemp("corpus30")
    write_corpus(out, 30, seed=3)
    return out


@pytest.fixture
def pg_url():
    """The machine's PostgreSQL, with this test's tables in a fresh schema dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.schema import CreateSchema, DropSchema

    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(CreateSchema(schema))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(DropSchema(schema, cascade=True))
    admin.dispose()


@pytest.fixture
def s3_server(monkeypatch):
    """A moto S3 server over HTTP on a free port, with dummy credentials in the environment.

    Returns the endpoint URL; ``AWS_ENDPOINT_URL_S3`` is left to each test, so a test can show
    that ``--s3_endpoint_url`` alone is enough.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    yield f"http://{host}:{port}"
    server.stop()
