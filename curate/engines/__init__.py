"""Where a stage's work runs: processes on this machine (``local``) or a Ray cluster (``ray``).

A stage cuts its inputs into pieces (``thresher.curate.io.shards``) and gives
the engine a ``Job``: a picklable object whose ``setup()`` runs once per
worker (compile the rules, load a fastText or torch model) and whose call
turns one piece into a result. Both engines run the same job on the same
pieces and hand results back in piece order, so what a stage writes does not
depend on the engine or on the number of workers; only where the work happens
changes. Ray is imported only when ``--engine ray`` asks for it, and is an
optional extra (``pip install "thresher[ray]"``).
"""

from __future__ import annotations

import argparse
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from thresher.curate.errors import ThresherError

if TYPE_CHECKING:
    from thresher.curate.io.parts import Parts
    from thresher.curate.io.shards import Piece

ENGINES = ("local", "ray")


class Job:
    """One stage's work on one piece; ``setup`` runs once per worker before its first piece.

    ``loads_models``: ``setup`` loads a model (fastText, perplexity, reward);
    Ray then keeps each worker's copy in an actor of a fixed pool, where other
    jobs run as plain tasks whose setup is cached per worker process.
    """

    loads_models = False
    #: Where a sharded run's parts go (set by the driver); None: results are held for the driver to write.
    parts: Parts | None = None

    def setup(self) -> None:
        """Build what every piece needs (rules, models); the default needs nothing."""

    def __call__(self, piece: Piece) -> Any:
        raise NotImplementedError


class Engine(ABC):
    """Runs a ``Job`` over pieces on ``workers`` workers; results come back in piece order."""

    name: str
    workers: int

    @abstractmethod
    def map(self, job: Job, pieces: Sequence[Piece]) -> Iterator[Any]:
        """``job(piece)`` for every piece, in order."""

    def close(self) -> None:
        """Release the workers (the local engine's pool closes with each map)."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def add_arguments(parser: argparse.ArgumentParser, workers_help: str = "worker processes") -> None:
    """``--workers``, ``--engine`` and ``--ray-address``: the same three flags on every scalable stage."""
    group = parser.add_argument_group("engine")
    group.add_argument("--workers", type=int, metavar="N",
                       help=f"{workers_help} (default: the usable cores; with --engine ray, the cluster's CPUs)")
    group.add_argument("--engine", choices=ENGINES, default="local",
                       help="local: processes on this machine (default); ray: a Ray cluster, same results "
                            "(needs pip install 'thresher[ray]')")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="with --engine ray: the cluster to join (auto: the one `ray start --head` started "
                            "on this node); default: start a Ray runtime on this machine")


def engine_from(args: argparse.Namespace) -> Engine:
    """The engine the command line asks for; ``args.workers`` is resolved to a number on the way."""
    if args.workers is not None and args.workers < 1:
        raise ThresherError(f"--workers must be at least 1, got {args.workers}")
    if args.engine == "ray":
        from thresher.curate.engines.ray_engine import RayEngine

        engine: Engine = RayEngine(args.ray_address, args.workers)
    else:
        if args.ray_address:
            raise ThresherError("--ray-address needs --engine ray")
        from thresher.curate.engines.local import LocalEngine

        engine = LocalEngine(args.workers or usable_cores())
    args.workers = engine.workers
    return engine
