"""The local engine: worker processes on this machine, fed pieces in order.

Small inputs run in this process (a pool costs more than it saves below a
few megabytes); larger ones go to a pool of ``workers`` processes with at
most two pieces per worker in flight, so memory stays bounded by pieces, not
by the input, and results come back in piece order.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from thresher.curate.engines import Engine, Job, usable_cores
from thresher.curate.errors import ThresherError

if TYPE_CHECKING:
    from thresher.curate.io.shards import Piece

#: Below this many bytes of input, one process is faster than starting a pool.
PARALLEL_MIN_BYTES = 4 << 20


class ProcessPool:
    """A process pool started on first need, fed in order with at most ``2 * processes`` items in flight.

    ``multiprocessing``'s ``imap`` would pull the whole input into its task
    queue; here the caller's iterator is read only as results are taken.
    Forked where the platform allows, so workers inherit what the parent
    already built (dedup's lookup tables). A worker that dies (killed, out of
    memory) fails the run with a clear error instead of hanging it; nothing
    half-written is left, so running the command again is safe.
    """

    def __init__(self, processes: int, initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> None:
        self.processes = max(1, processes)
        self._initializer, self._initargs = initializer, initargs
        self._pool: Any = None

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any],
            worth: Callable[[Any], bool] = lambda item: True) -> Iterator[Any]:
        """``fn(item)`` for each item, in order; the pool starts at the first item ``worth`` a process."""
        from concurrent.futures.process import BrokenProcessPool

        pending: deque[Any] = deque()
        try:
            for item in items:
                if self._pool is None and self.processes > 1 and worth(item):
                    self._start()
                if self._pool is None:
                    yield fn(item)
                    continue
                pending.append(self._pool.submit(fn, item))
                while len(pending) > 2 * self.processes:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool:
            raise ThresherError("a worker process died (killed, or out of memory?); nothing was left half-written, "
                                "so run the command again, with fewer --workers if memory is short") from None

    def _start(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self._pool = ProcessPoolExecutor(self.processes, context, self._initializer, self._initargs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def terminate(self) -> None:
        """Stop now: pending pieces are dropped and running workers are not waited for."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


_JOB: Job | None = None
_SETUP_ERROR: BaseException | None = None


def _init_job(job: Job, threads: int) -> None:
    """Pool initializer: set the job up once per process. An error is kept and raised with the first
    piece, where it reaches the parent as itself (a failing initializer only breaks the pool).

    ``threads``: the cores each worker may use, for libraries that start thread pools (torch, BLAS,
    loaded by a model job's setup): N workers of N threads each would fight over N cores.
    """
    global _JOB, _SETUP_ERROR
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    _JOB, _SETUP_ERROR = job, None
    try:
        job.setup()
    except Exception as exc:  # noqa: BLE001 - re-raised in _run_piece, in the parent
        _SETUP_ERROR = exc


def _run_piece(piece: Piece) -> Any:
    if _SETUP_ERROR is not None:
        raise _SETUP_ERROR
    assert _JOB is not None, "_init_job first"
    return _JOB(piece)


class LocalEngine(Engine):
    """Processes on this machine."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)

    def parallel(self, pieces: Sequence[Piece]) -> bool:
        """Whether a pool pays off: several workers, several pieces, and a few megabytes of input."""
        return self.workers > 1 and len(pieces) > 1 and sum(p.size for p in pieces) >= PARALLEL_MIN_BYTES

    def map(self, job: Job, pieces: Sequence[Piece]) -> Iterator[Any]:
        if not self.parallel(pieces):
            job.setup()
            for piece in pieces:
                yield job(piece)
            return
        processes = min(self.workers, len(pieces))
        pool = ProcessPool(processes, _init_job, (job, max(1, usable_cores() // processes)))
        try:
            yield from pool.map(_run_piece, pieces)
        except BaseException:
            pool.terminate()
            raise
        pool.close()
