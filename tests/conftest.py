"""Shared fixtures: a small synthetic corpus and a small trained bundle, made once per session.

Every test carries exactly one tier marker (``unit``, ``component`` or ``e2e``, see
pyproject.toml); collection fails otherwise. ``pytest -m "not e2e"`` is the fast loop.

TensorFlow is split into two logical CPU devices before the first test that may touch it, so
tests can run the detector under a real MirroredStrategy without a GPU. This file does not import
TensorFlow itself, so unit tests of modules that do without it run without it.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from model.config import (
    BackboneConfig,
    DetectorConfig,
    FaceCropConfig,
    SamplingConfig,
)

TIERS = ("unit", "component", "e2e")
# The databases a store test runs against: SQLite in-process, the machine's PostgreSQL as e2e.
BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.component),
    pytest.param("postgresql", marks=pytest.mark.e2e),
]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test with no tier or more than one, before ``-m`` picks any of them."""
    wrong = []
    for item in items:
        tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"  {item.nodeid}: {', '.join(tiers) or 'no tier'}")
    if wrong:
        raise pytest.UsageError(
            f"every test needs exactly one of the markers {', '.join(TIERS)}:\n" + "\n".join(wrong)
        )


def split_cpu_in_two() -> None:
    """Two logical CPU devices for TensorFlow; a no-op once done.

    TensorFlow accepts this only before it initialises its devices, so it runs before the first
    test that is not a unit test, and before every test once anything has imported TensorFlow.
    """
    import tensorflow as tf

    (cpu, *_) = tf.config.list_physical_devices("CPU")
    if tf.config.get_logical_device_configuration(cpu) is None:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if "tensorflow" in sys.modules or item.get_closest_marker("unit") is None:
        split_cpu_in_two()


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


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    """A migrated moderation database, SQLite (component) or PostgreSQL (e2e), as
    ``(engine, pipelines.store.database.Tables)``."""
    from pipelines.store import database
    from pipelines.store.migrations import migrate

    url = (
        f"sqlite:///{tmp_path / 's.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    engine = database.connect(url)
    migrate(engine)
    yield engine, database.Tables.reflect(engine)
    engine.dispose()


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
