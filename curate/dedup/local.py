"""The one-machine dedup: one index of every record's features in this process, passes on ``--workers``.

Pass 1 turns every row into its exact key, content id, a few numbers and a
MinHash signature (in batches, on worker processes); ``clusters.find_duplicates``
decides on the whole index at once; the verify pass recomputes the shingle
sets of the candidate records only; the last pass hands each piece the fate of
its removed rows and writes it on a worker (``partitioned.write_piece``, the
same function the Ray engine's last map runs), so the output is the same.
Only per-record numbers and signatures stay in memory (2.3 GB at the peak for
a million records); past one machine's memory, ``distributed.py`` partitions
the same decision over a Ray cluster.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from thresher.curate.dedup import clusters
from thresher.curate.dedup.partitioned import Context, Table, take
from thresher.curate.dedup.passes import Features, Sources, Workers, batches, features, write
from thresher.curate.engines.local import LocalEngine

if TYPE_CHECKING:
    from thresher.curate.dedup.command import Run
    from thresher.curate.io.shards import Piece


def dedup_local(run: Run, workers: int) -> dict[str, Any]:
    """Deduplicate ``run`` on this machine with ``workers`` processes; returns the stats (also written)."""
    settings = run.settings
    sources = Sources(run.pieces)
    # What the last pass's workers need (``verify`` is the passes' business, decided after pass 1).
    ctx = Context(settings, run.threshold, 1, False, run.input_pieces, tuple(p.path for p in run.pieces))
    pool = Workers(settings, max(1, workers), ctx)
    start = time.perf_counter()
    stage = run.stage()  # its clock starts now, so "seconds" covers every pass
    try:
        # Pass 1: features of inputs, then of references.
        parts = list(pool.map(features, batches(sources.scan(range(run.inputs)), sources)))
        sources.input_records = len(sources.file)
        parts += list(pool.map(features, batches(sources.scan(range(run.inputs, len(run.paths))), sources)))
        feats = Features.concat(parts, settings.num_perm, settings.exact_only)
        del parts
        phases = {"features": time.perf_counter() - start, "verify": 0.0}
        total = len(feats.valid)
        n_in = sources.input_records
        use_verify = run.use_verify(n_in)
        is_ref = np.arange(total) >= n_in
        valid = np.flatnonzero(feats.valid)

        def verifier(pairs: np.ndarray) -> np.ndarray:
            begin = time.perf_counter()
            sims = _verify_pairs(valid[pairs], sources, pool) if len(pairs) else np.empty(0)
            phases["verify"] += time.perf_counter() - begin
            return sims

        verdict = clusters.find_duplicates(
            feats.key[valid],
            settings.keep.rank(feats.length[valid], feats.score[valid]),
            sigs=None if settings.exact_only else feats.sigs[valid],  # type: ignore[index]
            shingled=feats.shingled[valid],
            is_ref=is_ref[valid],
            threshold=run.threshold,
            verify=verifier if use_verify else None,
        )
        # Back from valid-record numbering to global indices.
        survivor = np.full(total, -1, dtype=np.int64)
        kind = np.zeros(total, dtype=np.int8)
        similarity = np.zeros(total)
        hit = verdict.survivor >= 0
        survivor[valid[hit]] = valid[verdict.survivor[hit]]
        kind[valid] = verdict.kind
        similarity[valid] = verdict.similarity
        phases["clusters"] = time.perf_counter() - start - phases["features"] - phases["verify"]

        # Last pass: each input piece's rows to the output or to the removed file, on the workers.
        write_start = time.perf_counter()
        jobs = _piece_fates(run, sources, feats, survivor, kind, similarity)
        parallel = LocalEngine(workers).parallel([piece for piece, _, _ in jobs])
        with stage, run.writer() as writer:
            for result in pool.map(write, ((piece, run.parts, info, fates) for piece, info, fates in jobs),
                                   worth=lambda job: parallel):
                stage.absorb(result, writer)
            phases["write"] = time.perf_counter() - write_start
            pool.close()  # the workers' peak memory is known once they have ended
            found = stage.extra.pop("duplicates", Counter())
            run.finish(stage, start, phases, duplicates={name: found[name] for name in ("exact", "near", "against")},
                       against_records=total - n_in, candidate_pairs=verdict.candidate_pairs,
                       clusters=verdict.clusters, verify=use_verify, engine="local", workers=pool.processes,
                       worker_memory=None)
            return stage.stats()
    finally:
        pool.close()


def _piece_fates(run: Run, sources: Sources, feats: Features, survivor: np.ndarray, kind: np.ndarray,
                 similarity: np.ndarray) -> list[tuple[Piece, dict[str, Any], Table]]:
    """For each input piece, its row count, its unreadable rows and the fate of its removed rows (as the
    partitioned dedup hands them to ``write_piece``: uids, the survivor's uid, id and line, kind, similarity)."""
    starts = np.concatenate([[0], np.cumsum(np.frombuffer(sources.piece_rows, dtype=np.int64))])
    n_in = sources.input_records
    lost = np.flatnonzero(survivor[:n_in] >= 0)
    target = survivor[lost]

    def uid(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        piece = np.searchsorted(starts, index, side="right") - 1
        return piece, (piece.astype(np.int64) << 32) + (index - starts[piece])

    piece, lost_uid = uid(lost)
    fates: Table = {"uid": lost_uid, "survivor": uid(target)[1], "kind": kind[lost], "sim": similarity[lost],
                    "rid": feats.ids[target], "line": np.frombuffer(sources.line, dtype=np.int64)[target]}
    bounds = np.searchsorted(piece, np.arange(run.input_pieces + 1))
    errors: list[dict[int, tuple[str, str]]] = [{} for _ in range(run.input_pieces)]
    for index, error in feats.errors.items():
        if index < n_in:
            at = int(np.searchsorted(starts, index, side="right") - 1)
            errors[at][index - int(starts[at])] = error
    return [(p, {"rows": int(starts[i + 1] - starts[i]), "errors": errors[i]},
             take(fates, np.arange(bounds[i], bounds[i + 1]))) for i, p in enumerate(run.pieces[: run.input_pieces])]


def _lookup(indices: np.ndarray, fn: Any, sources: Sources, pool: Workers) -> dict[int, Any]:
    """``fn`` (a worker function over raw rows) of the records at ``indices``: re-reads, computes only those."""
    mask = np.zeros(len(sources.file), dtype=bool)
    mask[indices] = True
    files = np.unique(np.frombuffer(sources.file, dtype=np.int32)[indices]) if len(indices) else []
    rows = (item for f in files for item in sources.scan(range(f, f + 1)) if mask[item[0]])
    return dict(zip(indices.tolist(), (value for batch in pool.map(fn, batches(rows)) for value in batch)))


def _verify_pairs(pairs: np.ndarray, sources: Sources, pool: Workers) -> np.ndarray:
    """Exact Jaccard of each pair: re-read the candidate records only and shingle them again."""
    from thresher.curate.dedup import minhash
    from thresher.curate.dedup.passes import shingle_sets

    sets = _lookup(np.unique(pairs), shingle_sets, sources, pool)
    return np.array([minhash.jaccard(sets[i], sets[j]) for i, j in pairs.tolist()])
