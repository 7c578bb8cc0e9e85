"""``thresher dedup --engine ray``: the one-machine decision, partitioned over a Ray cluster.

The one-machine dedup keeps one index of every record's signature in one
process: 2.3 GB at its peak for a million records (``bench_scale.py``), so a
hundred million need a machine with 200+ GB and one core for the decision.
Here nothing holds the corpus. The standard scalable MinHash LSH, as NeMo-Curator, data-juicer and
datatrove run it, as a graph of Ray tasks over numpy partitions
(``partitioned.py`` holds the tasks):

- a map over pieces computes features (exact key, signature, content id);
- a shuffle by exact key forms exact groups (a distributed group-by) and
  emits each representative's LSH band keys;
- a shuffle by band key gathers each bucket; candidate pairs inside it are
  measured (exact Jaccard of re-read shingle sets where the one-machine dedup
  verifies, else the MinHash estimate);
- connected components of the edges by iterative min-label propagation;
- a shuffle by component hands each partition whole components, decided by
  ``clusters.decide``, the one-machine rule; so the kept set, the removed set
  with its reasons and the counts are the same as on one machine;
- a map over pieces writes every record, as on one machine.

Each task sees one piece or one partition; the number of partitions grows
with the input (``PARTITION_BYTES``), so a worker's memory is bounded by its
share, not by the corpus. The graph runs on any object with ``put``,
``submit``, ``get`` and ``wait``: the Ray engine, or ``Serial`` here, which
runs it in this process (the tests compare it with the one-machine dedup).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from thresher.curate.dedup import partitioned as tasks
from thresher.curate.dedup.partitioned import Context

if TYPE_CHECKING:
    from thresher.curate.dedup.command import Run

#: Input bytes per shuffle partition: ~0.5M short documents, a few hundred MB of keys and signatures.
PARTITION_BYTES = 256 << 20


class Serial:
    """Runs the task graph in this process, task after task: the partitioned dedup without Ray."""

    name = "serial"

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers  # partitions at least: 2 makes every shuffle really split

    def put(self, value: Any) -> Any:
        return value

    def submit(self, fn: Callable[..., Any], *args: Any, returns: int = 1) -> Any:
        value = fn(*args)
        return list(value) if returns > 1 else value

    def get(self, handles: list[Any]) -> list[Any]:
        return list(handles)

    def wait(self, handles: list[Any]) -> None:
        """Nothing runs in the background here."""


def dedup_partitioned(run: Run, engine: Any) -> dict[str, Any]:
    """Deduplicate ``run`` with the partitioned task graph on ``engine``; returns the stats (also written)."""
    start = time.perf_counter()
    stage = run.stage()
    pieces = run.pieces
    n_pieces = len(pieces)
    parts = max(engine.workers, math.ceil(sum(piece.size for piece in pieces) / PARTITION_BYTES))
    ctx = Context(run.settings, run.threshold, parts, False, run.input_pieces, tuple(p.path for p in pieces))
    submit = engine.submit
    ref = engine.put(ctx)

    features = [submit(tasks.piece_features, ref, piece, returns=parts + 1) for piece in pieces]
    infos = engine.get([f[parts] for f in features])
    records_in = sum(info["rows"] for info in infos[: run.input_pieces])
    ctx = replace(ctx, verify=run.use_verify(records_in))
    ref = engine.put(ctx)
    groups = [submit(tasks.group_partition, ref, *[f[p] for f in features], returns=parts + 1) for p in range(parts)]
    states = [g[parts] for g in groups]
    del features  # Ray frees each object once no handle and no pending task needs it
    engine.wait(states)
    phases = {"features": time.perf_counter() - start}

    candidate_pairs, rounds = 0, 0
    components: list[Any] = [None] * parts
    edges: list[Any] = [None] * parts
    if ctx.near:
        mark = time.perf_counter()
        buckets = [submit(tasks.bucket_partition, ref, *[g[q] for g in groups], returns=parts) for q in range(parts)]
        pairs = [submit(tasks.pair_partition, ref, states[p], *[b[p] for b in buckets], returns=parts + 1)
                 for p in range(parts)]
        candidate_pairs = sum(engine.get([x[parts] for x in pairs]))
        if ctx.verify:
            pending = [submit(tasks.pending_partition, ref, states[p], *[x[p] for x in pairs], returns=n_pieces + 1)
                       for p in range(parts)]
            sets = [submit(tasks.piece_sets, ref, piece, *[w[1 + piece.index] for w in pending], returns=parts)
                    for piece in pieces]
            edges = [submit(tasks.verify_partition, ref, pending[p][0], *[s[p] for s in sets]) for p in range(parts)]
        else:
            edges = [submit(tasks.estimate_partition, ref, states[p], *[x[p] for x in pairs]) for p in range(parts)]
        engine.wait(edges)
        del groups, buckets, pairs
        phases["lsh"] = time.perf_counter() - mark
        mark = time.perf_counter()
        spread = [submit(tasks.spread_edges, ref, e, returns=parts) for e in edges]
        components = [submit(tasks.cc_init, ref, *[s[p] for s in spread]) for p in range(parts)]
        inbox: list[list[Any]] = [[] for _ in range(parts)]
        while True:
            rounds += 1
            steps = [submit(tasks.cc_step, ref, components[p], *inbox[p], returns=parts + 2) for p in range(parts)]
            components = [s[parts] for s in steps]
            if not sum(engine.get([s[parts + 1] for s in steps])):
                break
            inbox = [[s[p] for s in steps] for p in range(parts)]
        phases["components"] = time.perf_counter() - mark

    mark = time.perf_counter()
    assigned = [submit(tasks.assign_partition, ref, states[p], components[p], edges[p], returns=2 * parts + n_pieces + 1)
                for p in range(parts)]
    decided = [submit(tasks.component_partition, ref, *[a[p] for a in assigned], *[a[parts + p] for a in assigned],
                      returns=n_pieces + 1) for p in range(parts)]
    clusters = sum(engine.get([a[-1] for a in assigned] + [d[-1] for d in decided]))
    phases["decide"] = time.perf_counter() - mark

    mark = time.perf_counter()
    written = [submit(tasks.write_piece, ref, piece, run.parts, infos[piece.index],
                      *[a[2 * parts + piece.index] for a in assigned], *[d[piece.index] for d in decided])
               for piece in pieces[: run.input_pieces]]
    peak = max([info["peak"] for info in infos], default=0.0)
    with stage, run.writer() as writer:
        for handle in written:  # in piece order, each fetched when the writer gets to it
            result = engine.get([handle])[0]
            peak = max(peak, result.peak_memory_mb)
            stage.absorb(result, writer)
        phases["write"] = time.perf_counter() - mark
        found: Counter[str] = stage.extra.pop("duplicates", Counter())
        run.finish(stage, start, phases, worker_memory=peak,
                   duplicates={name: found[name] for name in ("exact", "near", "against")},
                   against_records=sum(info["rows"] for info in infos[run.input_pieces:]),
                   candidate_pairs=candidate_pairs, clusters=clusters, verify=ctx.verify,
                   engine=engine.name, workers=engine.workers, partitions=parts, label_rounds=rounds)
        result = stage.stats()
    return result
