"""The one-machine dedup: one index of every record's features in this process, passes on ``--workers``.

Pass 1 turns every row into its exact key, a few numbers and a MinHash
signature (in batches, on worker processes); ``clusters.find_duplicates``
decides on the whole index at once; the verify pass recomputes the shingle
sets of the candidate records only; with ``--keep longest|score`` or
``--against`` a lookup pass computes the ids of survivors read after one of
their duplicates; the last pass writes every record, piece by piece, to the
output or to the removed file. Only per-record numbers and signatures stay in
memory (about 0.6 GB per million records); past one machine's memory,
``distributed.py`` partitions the same decision over a Ray cluster.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from thresher.curate.dedup import clusters
from thresher.curate.dedup.passes import Features, Sources, Workers, batches, features, record_ids, route
from thresher.curate.errors import ThresherError
from thresher.curate.io.shards import read_piece
from thresher.curate.stage import PieceStage

if TYPE_CHECKING:
    from thresher.curate.dedup.command import Run


def dedup_local(run: Run, workers: int) -> dict[str, Any]:
    """Deduplicate ``run`` on this machine with ``workers`` processes; returns the stats (also written)."""
    settings = run.settings
    sources = Sources(run.paths, run.pieces)
    pool = Workers(settings, max(1, workers))
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
        # Survivors' ids: those read after one of their duplicates (--keep longest/score, --against)
        # are looked up now; the rest are computed when the last pass reaches them.
        ahead = survivor > np.arange(total)
        ids = _lookup(np.unique(survivor[ahead]), record_ids, sources, pool)
        phases["clusters"] = time.perf_counter() - start - phases["features"] - phases["verify"]
    finally:
        pool.close()

    # Last pass: every input record to the output or to the removed file, piece by piece.
    write_start = time.perf_counter()
    is_survivor = np.zeros(total, dtype=bool)
    is_survivor[survivor[survivor >= 0]] = True
    with stage, run.writer() as writer:
        index = 0
        for piece in run.pieces[: run.input_pieces]:
            with PieceStage("dedup", piece, run.parts) as out:
                for row in read_piece(piece):
                    out.seen()
                    if is_survivor[index] and index not in ids:
                        ids[index] = record_ids([row.data])[0]
                    duplicate = None
                    if feats.valid[index] and survivor[index] >= 0:
                        target = int(survivor[index])
                        duplicate = (ids[target], sources.where(target), clusters.KIND_NAMES[int(kind[index])],
                                     float(similarity[index]))
                    route(out, row, None if feats.valid[index] else feats.errors[index], duplicate)
                    index += 1
            stage.absorb(out.result, writer)
        if stage.records_in != n_in:
            raise ThresherError("the inputs changed while dedup was reading them; run it again")
        phases["write"] = time.perf_counter() - write_start
        lost = survivor[:n_in] >= 0
        removed_kind = np.bincount(kind[:n_in][lost], minlength=3)
        duplicates = {"exact": int(removed_kind[clusters.EXACT]), "near": int(removed_kind[clusters.NEAR]),
                      "against": int((survivor[:n_in][lost] >= n_in).sum())}
        run.finish(stage, start, phases, duplicates=duplicates, against_records=total - n_in,
                   candidate_pairs=verdict.candidate_pairs, clusters=verdict.clusters, verify=use_verify,
                   engine="local", workers=pool.processes, worker_memory=None)
        result = stage.stats()
    return result


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
