"""Where a worker decodes its videos: a shared pool of child processes, or this process.

A :class:`Decoders` is a small picklable description that a step carries to its workers and
opens in ``setup``: what it opens samples a local video into windows. The scan, ``deeptrust
score`` and ``deeptrust bench``'s memory measure take one, so a test can hand the scan an
in-process decoder or a child with another entry point.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from model.config import DetectorConfig
from model.video import SampledVideo, WindowSampler
from pipelines.scan.isolation import DECODER_CHILD, SPARE_AFTER_S, shared_pool


class Sampler(Protocol):
    def sample(self, path: str) -> SampledVideo:
        """``path``'s windows; raises ``model.errors.VideoError`` for a video that fails."""
        ...


class Decoders(Protocol):
    def open(
        self, config: DetectorConfig, timeout_s: float
    ) -> contextlib.AbstractContextManager[Sampler]:
        """A sampler for ``config``'s windows, open for the block."""
        ...


def _new_key() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ChildDecoders:
    """``size`` decoder children per worker process, shared by the copies of a step there.

    ``child`` is the interpreter arguments that start a child (``pipelines.scan.isolation``).
    The ``key`` is pickled along, so every copy of the step that carries this value shares one
    pool; another value gets a pool of its own.
    """

    size: int = 1
    child: tuple[str, ...] = DECODER_CHILD
    spare_after_s: float = SPARE_AFTER_S
    key: str = field(default_factory=_new_key)

    def open(
        self, config: DetectorConfig, timeout_s: float
    ) -> contextlib.AbstractContextManager[Sampler]:
        return shared_pool(self.key, config, timeout_s, self.size, self.child, self.spare_after_s)


class _LockedSampler:
    """A WindowSampler that one thread at a time uses."""

    def __init__(self, config: DetectorConfig) -> None:
        self._sampler = WindowSampler(config, fingerprint=True)
        self._lock = threading.Lock()

    def sample(self, path: str) -> SampledVideo:
        with self._lock:
            return self._sampler.sample(path)


@dataclass(frozen=True)
class InProcessDecoders:
    """Decoding in the caller's process: no isolation and no time limit.

    For measuring the decoder itself (``deeptrust bench``) and for tests that need no child.
    """

    @contextlib.contextmanager
    def open(self, config: DetectorConfig, timeout_s: float) -> Iterator[Sampler]:
        yield _LockedSampler(config)
