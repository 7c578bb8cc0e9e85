"""The Ray engine: the same jobs on a Ray cluster (or a Ray runtime on this machine).

Record stages (validate, convert, filter, stats) are a Ray Data pipeline
over pieces: ``from_items(pieces).map_batches(...)``, one piece per batch,
results in piece order (``preserve_order``). A job that loads a model
(fastText quality or language id, perplexity, reward, a tokenizer) runs on
an actor pool of ``--workers`` actors (``ActorPoolStrategy``): each loads the
model once and keeps it. Other jobs run as plain tasks, set up once per
worker process (Ray reuses them) without the seconds an actor pool takes to
start. Pieces, not records, are the rows: a worker reads its own byte range
or row group, so every record keeps its file and line, and no record crosses
the network unless the driver writes it.

Dedup's decision is a graph of Ray tasks over numpy partitions (``submit``,
``get``): see ``thresher.curate.dedup.distributed``. A task that fails or
whose worker is killed is retried by Ray; every task is a pure function of
its inputs and every file it writes appears by rename, so a retry never
duplicates output.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from thresher.curate.engines import Engine, Job, usable_cores
from thresher.curate.errors import ThresherError

if TYPE_CHECKING:
    from thresher.curate.io.shards import Piece

#: Retries of a task whose worker died (Ray's default is 3; a preempted node can cost more).
MAX_RETRIES = 5


def require_ray() -> Any:
    """``import ray``, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the record pipeline needs Ray Data, not only Ray core
    except ImportError:
        raise ThresherError("--engine ray needs Ray: pip install 'thresher[ray]'") from None
    return ray


def connect(address: str | None, workers: int | None) -> Any:
    """Join the cluster at ``address``, or start a Ray runtime here; once per process (a recipe's
    stages share it). Progress bars and info logs are turned off: stages print their own summary."""
    ray = require_ray()
    if not ray.is_initialized():
        options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        try:
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=workers or usable_cores(), include_dashboard=False, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
            raise ThresherError(f"cannot start or join {where}: {exc}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


@dataclass
class Failure:
    """An error a user can act on, raised in a worker and carried back as data: Ray would wrap it in
    its own exception with a remote traceback, and the CLI prints one line."""

    error: ThresherError


def _run(job: Job, failure: Failure | None, items: Any) -> dict[str, list[bytes]]:
    """One batch of pickled pieces through a set-up job; results pickled, errors carried as ``Failure``."""
    results = []
    for item in items:
        try:
            result = failure or job(pickle.loads(item))
        except ThresherError as exc:
            result = Failure(exc)
        results.append(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    return {"result": results}


def _set_up(job: bytes) -> tuple[Job, Failure | None]:
    loaded: Job = pickle.loads(job)
    try:
        loaded.setup()
    except ThresherError as exc:
        return loaded, Failure(exc)
    return loaded, None


class _JobActor:
    """One worker of an actor pool: the job (and its model) set up once, then one piece per call."""

    def __init__(self, job: bytes) -> None:
        self.job, self.failure = _set_up(job)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[bytes]]:
        return _run(self.job, self.failure, batch["piece"])


#: The job last set up in this worker process, by digest: Ray reuses worker processes across tasks,
#: so a task-based job (rules only) is set up once per process, not once per piece.
_CACHED: dict[bytes, tuple[Job, Failure | None]] = {}


def _task(batch: dict[str, Any], job: bytes) -> dict[str, list[bytes]]:
    import hashlib

    key = hashlib.blake2b(job, digest_size=16).digest()
    if key not in _CACHED:
        _CACHED.clear()
        _CACHED[key] = _set_up(job)
    return _run(*_CACHED[key], batch["piece"])


class RayEngine(Engine):
    """A Ray cluster: Ray Data over pieces for record stages, a task graph for dedup's partitioned decision."""

    name = "ray"

    def __init__(self, address: str | None, workers: int | None) -> None:
        self.ray = connect(address, workers)
        self.workers = workers or max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        self._remote: dict[Callable[..., Any], Any] = {}

    def map(self, job: Job, pieces: Sequence[Piece]) -> Iterator[Any]:
        if not pieces:
            return
        items = [{"piece": pickle.dumps(piece, protocol=pickle.HIGHEST_PROTOCOL)} for piece in pieces]
        job_bytes = self.ray.cloudpickle.dumps(job)  # a job class may live in a script
        dataset = self.ray.data.from_items(items, override_num_blocks=len(items))
        # One piece per batch; Ray Data retries a failed task and restarts a dead actor (max_restarts=-1).
        if job.loads_models:  # an actor pool: each worker loads the model once and keeps it
            dataset = dataset.map_batches(
                _JobActor, fn_constructor_args=(job_bytes,), batch_size=1, batch_format="numpy", num_cpus=1,
                compute=self.ray.data.ActorPoolStrategy(size=min(self.workers, len(items))),
            )
        else:  # plain tasks: no actor start-up per stage; the set-up job is cached per worker process
            dataset = dataset.map_batches(_task, fn_args=(job_bytes,), batch_size=1, batch_format="numpy",
                                          num_cpus=1,
                                          compute=self.ray.data.TaskPoolStrategy(size=min(self.workers, len(items))))
        for row in dataset.iter_rows():
            result = pickle.loads(row["result"])
            if isinstance(result, Failure):
                raise result.error
            yield result

    # ---------------------------------------------------------------- task graphs (dedup)

    def put(self, value: Any) -> Any:
        """Store ``value`` once in the object store; its handle is passed to many tasks at no copy."""
        return self.ray.put(value)

    def submit(self, fn: Callable[..., Any], *args: Any, returns: int = 1) -> Any:
        """Run ``fn(*args)`` as a Ray task; ``args`` may be handles of earlier tasks. Returns a handle,
        or a list of ``returns`` handles when ``fn`` returns that many values."""
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self.ray.remote(max_retries=MAX_RETRIES)(fn)
        handles = remote.options(num_returns=returns).remote(*args)
        return list(handles) if returns > 1 else handles

    def get(self, handles: list[Any]) -> list[Any]:
        """The values behind ``handles``, raising a worker's ``ThresherError`` as itself."""
        try:
            return self.ray.get(list(handles))
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ThresherError):
                raise cause from None
            raise

    def wait(self, handles: list[Any]) -> None:
        """Block until every handle's task has finished (a phase boundary, for timing)."""
        if handles:
            self.ray.wait(list(handles), num_returns=len(handles), fetch_local=False)
