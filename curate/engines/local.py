"""The local engine: worker processes on this machine, fed pieces in order.

Small inputs run in this process (a pool costs more than it saves below a
few megabytes); larger ones go to a pool of ``workers`` processes with at
most two pieces per worker in flight, so memory stays bounded by pieces, not
by the input, and results come back in piece order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from thresher.curate.engines import Engine, Job

if TYPE_CHECKING:
    from thresher.curate.io.shards import Piece

#: Below this many bytes of input, one process is faster than starting a pool.
PARALLEL_MIN_BYTES = 4 << 20


class ProcessPool:
    """A process pool started on first need, fed in order with at most ``2 * processes`` items in flight.

    ``multiprocessing``'s ``imap`` would pull the whole input into its task
    queue; here the caller's iterator is read only as results are taken.
    Forked where the platform allows, so workers inherit what the parent
    already built (dedup's lookup tables).
    """

    def __init__(self, processes: int, initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> None:
        self.processes = max(1, processes)
        self._initializer, self._initargs = initializer, initargs
        self._pool: Any = None

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any],
            worth: Callable[[Any], bool] = lambda item: True) -> Iterator[Any]:
        """``fn(item)`` for each item, in order; the pool starts at the first item ``worth`` a process."""
        pending: deque[Any] = deque()
        for item in items:
            if self._pool is None and self.processes > 1 and worth(item):
                import multiprocessing

                methods = multiprocessing.get_all_start_methods()
                context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
                self._pool = context.Pool(self.processes, self._initializer, self._initargs)
            if self._pool is None:
                yield fn(item)
                continue
            pending.append(self._pool.apply_async(fn, (item,)))
            while len(pending) > 2 * self.processes:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None

    def terminate(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None


_JOB: Job | None = None
_SETUP_ERROR: BaseException | None = None


def _init_job(job: Job) -> None:
    """Pool initializer: set the job up once per process. An error is kept and raised with the first
    piece, since a failing initializer makes ``multiprocessing`` restart the worker forever."""
    global _JOB, _SETUP_ERROR
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
        pool = ProcessPool(min(self.workers, len(pieces)), _init_job, (job,))
        try:
            yield from pool.map(_run_piece, pieces)
        except BaseException:
            pool.terminate()
            raise
        pool.close()
