"""Decode videos in a child process, so that a decoder crashing or hanging costs one video.

OpenCV and FFmpeg run native code over untrusted uploads; a hostile file can crash them or make
them spin. The scan therefore decodes in a child (``python -m pipelines.scan.isolation FD``, or
another entry point given as ``child`` that calls :func:`start_child` and :func:`serve`) that
loads the face detector once and answers one request per video over a pipe: a local path in, the
video's stacked windows and perceptual hashes (``model.video.SampledVideo``) back, once per
video. The parent waits at most ``timeout_s`` for each answer. A child that dies or overruns is
killed, the video becomes an error row (``decoder_crashed`` or ``decode_timeout``), and a fresh
child takes the next video.

The threads of a worker process share a :class:`DecoderPool` of children (``shared_pool``)
rather than starting one each: every child imports TensorFlow and loads MTCNN, about five
CPU-seconds, and on a CPU worker those come out of the model's share of the cores while the scan
starts. One child decodes several times faster than a CPU's model scores, so a CPU worker needs
one; a GPU worker needs as many as keep its GPU fed. A hung upload must not stall the others
until its time limit, so a video that finds every child busy on one video for ``SPARE_AFTER_S``
starts a spare child; there are never more children than videos decoding at once.

A subprocess rather than ``multiprocessing``: Dask's worker processes are daemons, and
``multiprocessing`` refuses to give a daemon children.
"""

from __future__ import annotations

import contextlib
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path

import cv2

from model.config import DetectorConfig
from model.errors import VideoError
from model.video import SampledVideo, WindowSampler

# Starting the child imports TensorFlow and loads MTCNN: seconds, or minutes on a loaded worker.
STARTUP_TIMEOUT_S = 600.0
# The interpreter arguments that start the real decoder child; its pipe's descriptor follows.
DECODER_CHILD: tuple[str, ...] = ("-m", "pipelines.scan.isolation")
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_PARENT_POLL_S = 1.0
# A short video decodes in about a second. A child still on one video after this long is stuck on
# a hostile or a very long upload, and a video waiting for it starts a spare child instead.
SPARE_AFTER_S = 30.0
_WAIT_POLL_S = 1.0
# glibc maps blocks above this size fresh from the kernel, and returns free memory above it.
# Each video allocates and frees its stacked windows and the pickled reply (48 MB apiece at the
# default 224 px, 16 windows of 20 frames), above glibc's own 32 MB ceiling: without this, the
# child faulted every page of them in again for each video, a fifth of its time per video.
_HEAP_KEEP_BYTES = 256 << 20


def _stop(process: subprocess.Popen, conn: Connection) -> int:
    """Kill the child if it still runs, and return its exit status."""
    conn.close()
    if process.poll() is None:
        process.kill()
    return process.wait()


def _describe_exit(status: int) -> str:
    if status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"


class DecoderProcess:
    """A child process that samples videos into windows, restarted whenever it fails."""

    def __init__(
        self, config: DetectorConfig, timeout_s: float, child: Sequence[str] = DECODER_CHILD
    ) -> None:
        self._config = config
        self._timeout_s = timeout_s
        self._child = tuple(child)
        self._conn: Connection | None = None
        self._ready = False
        self._finalizer: weakref.finalize | None = None
        self._sent_at: float | None = None  # when the child got the video it decodes now

    def start(self) -> None:
        """Start the child without waiting for it: it loads while the caller does other work."""
        if self._conn is not None:
            return
        ours, theirs = Pipe()
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # FFmpeg logs every bad packet of a corrupt upload; its error row already says why.
        env.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        # One thread for MTCNN's small graphs: the cores belong to the detector's model calls,
        # and a worker that wants more decoding runs more decoders (threads or processes).
        env.setdefault("TF_NUM_INTRAOP_THREADS", "1")
        env.setdefault("TF_NUM_INTEROP_THREADS", "1")
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(_HEAP_KEEP_BYTES))
        env.setdefault("MALLOC_TRIM_THRESHOLD_", str(_HEAP_KEEP_BYTES))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        process = subprocess.Popen(
            [sys.executable, *self._child, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        ours.send(self._config)
        self._conn, self._ready = ours, False
        self._finalizer = weakref.finalize(self, _stop, process, ours)

    def sample(self, path: str) -> SampledVideo:
        """``path``'s windows, decoded in the child; raises VideoError as the child reports it."""
        conn = self._wait_ready()
        self._sent_at = time.monotonic()
        try:
            conn.send(path)
            if not conn.poll(self._timeout_s):
                self.close()
                raise VideoError(
                    "decode_timeout",
                    f"no result within {self._timeout_s:g} s (--decode_timeout_s); "
                    "the decoder was stopped",
                )
            reply = conn.recv()
        except (EOFError, OSError) as err:
            status = self.close()
            raise VideoError(
                "decoder_crashed", f"the decoder process died ({_describe_exit(status)})"
            ) from err
        finally:
            self._sent_at = None
        if reply[0] == "error":
            raise VideoError(reply[1], reply[2])
        return reply[1]

    def decoding_for(self) -> float:
        """Seconds the child has spent on its current video; 0 when it has none."""
        sent_at = self._sent_at
        return 0.0 if sent_at is None else time.monotonic() - sent_at

    def close(self) -> int:
        """Stop the child; returns its exit status (0 when none was running)."""
        status = 0
        if self._finalizer is not None:
            status = self._finalizer()
        self._conn, self._finalizer = None, None
        return status

    def _wait_ready(self) -> Connection:
        self.start()
        assert self._conn is not None
        if not self._ready:
            try:
                if not self._conn.poll(STARTUP_TIMEOUT_S):
                    raise TimeoutError(f"no answer within {STARTUP_TIMEOUT_S:g} s")
                self._conn.recv()
            except (EOFError, OSError) as err:
                status = self.close()
                raise RuntimeError(
                    f"the decoder process failed to start ({_describe_exit(status)})"
                ) from err
            self._ready = True
        return self._conn


class DecoderPool:
    """Decoder children that several threads share: each video takes whichever child is idle.

    A child that crashes or overruns is replaced as :class:`DecoderProcess` replaces itself. A
    video waits for an idle child before its ``timeout_s`` starts. When every child has spent
    ``spare_after_s`` on its current video, the waiting video starts a spare child and decodes in
    it; the spare stays in the pool. A spare starts only for a video that waits, so the pool never
    holds more children than the most videos decoding at once.
    """

    def __init__(
        self,
        config: DetectorConfig,
        timeout_s: float,
        size: int,
        spare_after_s: float = SPARE_AFTER_S,
        child: Sequence[str] = DECODER_CHILD,
    ) -> None:
        if size < 1:
            raise ValueError("a decoder pool needs at least one decoder")
        self._config = config
        self._timeout_s = timeout_s
        self._spare_after_s = spare_after_s
        self._child = tuple(child)
        self._decoders = [DecoderProcess(config, timeout_s, child) for _ in range(size)]
        self._lock = threading.Lock()
        self._idle: queue.SimpleQueue[DecoderProcess] = queue.SimpleQueue()
        for decoder in self._decoders:
            self._idle.put(decoder)

    def start(self) -> None:
        """Start every child without waiting for them."""
        for decoder in self._decoders:
            decoder.start()

    def sample(self, path: str) -> SampledVideo:
        """``path``'s windows from the next idle child; raises VideoError as it reports it."""
        decoder = self._take()
        try:
            return decoder.sample(path)
        finally:
            self._idle.put(decoder)

    def _take(self) -> DecoderProcess:
        """The next idle child, or a spare once every child is stuck on a video."""
        while True:
            try:
                return self._idle.get(timeout=_WAIT_POLL_S)
            except queue.Empty:
                pass
            with self._lock:
                if all(d.decoding_for() >= self._spare_after_s for d in self._decoders):
                    spare = DecoderProcess(self._config, self._timeout_s, self._child)
                    self._decoders.append(spare)
                    return spare

    def close(self) -> None:
        with self._lock:
            for decoder in self._decoders:
                decoder.close()


_POOLS: dict[str, tuple[DecoderPool, int]] = {}
_POOLS_LOCK = threading.Lock()


@contextlib.contextmanager
def shared_pool(
    key: str,
    config: DetectorConfig,
    timeout_s: float,
    size: int,
    child: Sequence[str] = DECODER_CHILD,
    spare_after_s: float = SPARE_AFTER_S,
) -> Iterator[DecoderPool]:
    """The process's pool for ``key``, started by its first user and closed by its last.

    Beam sets up one copy of a DoFn per worker thread; copies of the same step carry the same
    ``key`` and so share one pool.
    """
    with _POOLS_LOCK:
        pool, users = _POOLS.get(key, (None, 0))
        if pool is None:
            pool = DecoderPool(config, timeout_s, size, spare_after_s, child)
            pool.start()
        _POOLS[key] = (pool, users + 1)
    try:
        yield pool
    finally:
        with _POOLS_LOCK:
            users = _POOLS[key][1] - 1
            if users:
                _POOLS[key] = (pool, users)
            else:
                del _POOLS[key]
        if not users:
            pool.close()


def _exit_with_parent() -> None:
    """End this child when its parent dies, even in the middle of a hung decode."""
    parent = os.getppid()

    def watch() -> None:
        while not threading.Event().wait(_PARENT_POLL_S):
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def start_child() -> None:
    """What every decoder child does first: no core dumps, and no life beyond its parent's."""
    # A crashing decoder must not write core dumps the size of its 8K frames onto the worker.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _exit_with_parent()


def serve(conn: Connection) -> None:
    """The child's loop: the config first, then one path in and one reply out per video."""
    cv2.setNumThreads(1)  # OpenCV's resizes and colour conversions, likewise
    sampler = WindowSampler(conn.recv(), fingerprint=True)
    conn.send(("ready",))
    while True:
        try:
            path = conn.recv()
        except EOFError:  # the parent closed the pipe or died
            return
        try:
            reply = ("ok", sampler.sample(path))
        except VideoError as err:
            reply = ("error", err.code, err.detail)
        except Exception as err:  # any failure is this video's, never the child's end
            reply = ("error", "decode_failed", f"{type(err).__name__}: {err}")
        conn.send(reply)


def main() -> None:
    start_child()
    serve(Connection(int(sys.argv[1])))


if __name__ == "__main__":
    main()
