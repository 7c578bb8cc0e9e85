"""``thresher dedup``: remove exact and near-duplicate records, Chinese-aware.

Two stages over the same streamed pass. Exact: a hash of the normalised text
(NFKC, case-folded, punctuation stripped, whitespace collapsed; see
``shingles.normalize``). Near: MinHash signatures of script-aware shingles
(CJK character n-grams, word n-grams elsewhere) and LSH banding with the
bands and rows datasketch chooses for the threshold; candidate pairs are
checked with the exact Jaccard of their shingle sets (``--verify``, on by
default below a million records) or the MinHash estimate.

The input is streamed, never held: pass 1 computes each record's exact key
and signature (in batches, on ``--workers`` processes); the verify pass
recomputes the shingle sets of the candidate records only; with ``--keep
longest|score`` or ``--against`` a lookup pass computes the ids of survivors
read after one of their duplicates; the last pass writes every record either
to the output, in the shape it came in, or to the removed file with
``reason: "duplicate"``, the survivor's id, the kind (exact or near) and the
similarity. Only per-record numbers and signatures stay in memory
(``passes.py`` holds the passes, ``clusters.py`` the decision).

``clusters.duplicate_of(texts)`` is the same machinery for a list of strings
in memory, for stages that deduplicate what they generate (paraphrased
questions, say).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from thresher.curate.errors import RecordError, ThresherError
from thresher.curate.text.fields import texts_of
from thresher.schemas import Document, Record
from thresher.curate.io.claims import InputPath, OutputPath

if TYPE_CHECKING:
    from thresher.curate.dedup.passes import Sources, Workers

ON_CHOICES = ("auto", "text", "prompt", "response", "all")
#: Below this many records candidate pairs are verified with exact Jaccard by default.
VERIFY_BELOW = 1_000_000



# ---------------------------------------------------------------- which text a record is compared on


def record_text(record: Record, on: str) -> str:
    """The text of ``record`` that ``--on`` compares.

    ``prompt`` is the user turns; ``response`` every candidate response
    (chosen *and* rejected, every scored response: a pair is a duplicate only
    if both sides are) with tool calls (two calls that differ only in their
    arguments are different data); ``all``/``text`` both. ``auto`` is
    ``text`` for documents and ``all`` for the rest. The views are
    ``thresher.curate.text.fields.Texts``'s, shared with filter, split and stats.
    """
    texts = texts_of(record)
    if isinstance(record, Document):
        if on in ("auto", "text", "all"):
            return texts.text
        raise RecordError("", f"a document has no {on}; use --on text")
    if on == "prompt":
        return texts.prompt
    if on == "response":
        return texts.replies_text()
    return f"{texts.prompt}\n{texts.replies_text()}"


# ---------------------------------------------------------------- the command


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=InputPath, metavar="IN", help="record files or datasets folders")
    parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="OUT",
                        help="kept records (.jsonl or .json, optionally .gz)")
    parser.add_argument("--threshold", type=float, default=0.8,
                        help="Jaccard similarity of shingle sets at which records are near duplicates (default 0.8)")
    parser.add_argument("--exact-only", action="store_true", help="only remove exact duplicates (after normalisation)")
    parser.add_argument("--on", choices=ON_CHOICES, default="auto",
                        help="text compared: dialogue user turns (prompt), assistant turns (response), both (all); "
                             "auto: text for documents, all for the rest")
    parser.add_argument("--ngram", type=int, metavar="N",
                        help="shingle size for CJK characters and words alike (default: 3 characters, 5 words)")
    parser.add_argument("--num-perm", type=int, default=128, metavar="P", help="MinHash permutations (default 128)")
    parser.add_argument("--keep", default="first", metavar="POLICY",
                        help="survivor of a cluster: first, longest, or score:FIELD (highest; dotted paths allowed)")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None,
                        help=f"check candidate pairs with exact Jaccard (default: on below {VERIFY_BELOW:,} records)")
    parser.add_argument("--against", nargs="+", default=[], type=InputPath, metavar="FILE",
                        help="remove records that duplicate anything in these files (which are not deduplicated)")
    parser.add_argument("--removed", type=OutputPath, metavar="FILE", help="removed records with reasons (default: OUT.removed.jsonl)")
    parser.add_argument("--stats", type=OutputPath, metavar="FILE", help="stats JSON (default: OUT.stats.json)")
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8), metavar="N",
                        help="processes computing signatures (default: CPU count, at most 8)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    result = dedup(
        args.inputs, args.output,
        threshold=args.threshold, exact_only=args.exact_only, on=args.on, ngram=args.ngram,
        num_perm=args.num_perm, keep=args.keep, verify=args.verify, against=args.against,
        removed=args.removed, stats=args.stats, workers=args.workers,
    )
    print_summary(result, Console())
    return 0


def dedup(
    inputs: Sequence[str],
    output: str,
    *,
    threshold: float = 0.8,
    exact_only: bool = False,
    on: str = "auto",
    ngram: int | None = None,
    num_perm: int = 128,
    keep: str = "first",
    verify: bool | None = None,
    against: Sequence[str] = (),
    removed: str | None = None,
    stats: str | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Deduplicate ``inputs`` into ``output``; returns the stats (also written as JSON)."""
    from thresher.curate.dedup import clusters, minhash
    from thresher.curate.dedup.passes import (
        Features, KeepPolicy, Settings, Sources, Workers, batches, features, record_ids,
    )
    from thresher.curate.dedup.shingles import prepare
    from thresher.curate.io.writers import RecordWriter
    from thresher.curate.stage import Stage, default_sidecar

    clusters.check_threshold(threshold)
    if num_perm < 2:
        raise ThresherError(f"--num-perm must be at least 2, got {num_perm}")
    policy = KeepPolicy.parse(keep)
    if on not in ON_CHOICES:
        raise ThresherError(f"--on must be one of {', '.join(ON_CHOICES)}, got {on!r}")
    try:
        writer = RecordWriter(output)
    except ValueError as exc:
        raise ThresherError(str(exc)) from None
    if not exact_only:
        minhash.lsh_params(threshold, num_perm)  # fail early, and before forking
    prepare()
    settings = Settings(on, ngram, num_perm, exact_only, policy)
    sources = Sources([*inputs, *against])
    pool = Workers(settings, max(1, workers))
    start = time.perf_counter()
    removed_path = removed or default_sidecar(output, "removed")
    stats_path = stats or default_sidecar(output, "stats")
    stage = Stage("dedup", removed_path, stats_path)  # its clock starts now, so "seconds" covers every pass
    try:
        # Pass 1: features of inputs, then of references.
        n_files = len(sources.paths)
        parts = list(pool.map(features, batches(sources.scan(range(len(inputs))), sources)))
        sources.input_records = len(sources.file)
        parts += list(pool.map(features, batches(sources.scan(range(len(inputs), n_files)), sources)))
        feats = Features.concat(parts, num_perm, exact_only)
        del parts
        phases = {"features": time.perf_counter() - start, "verify": 0.0}
        total = len(feats.valid)
        n_in = sources.input_records
        use_verify = (n_in < VERIFY_BELOW) if verify is None else verify
        is_ref = np.arange(total) >= n_in
        valid = np.flatnonzero(feats.valid)

        def verifier(pairs: np.ndarray) -> np.ndarray:
            begin = time.perf_counter()
            sims = _verify_pairs(valid[pairs], sources, pool) if len(pairs) else np.empty(0)
            phases["verify"] += time.perf_counter() - begin
            return sims

        verdict = clusters.find_duplicates(
            feats.key[valid],
            policy.rank(feats.length[valid], feats.score[valid]),
            sigs=None if exact_only else feats.sigs[valid],  # type: ignore[index]
            shingled=feats.shingled[valid],
            is_ref=is_ref[valid],
            threshold=threshold,
            verify=verifier if use_verify and not exact_only else None,
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

    # Last pass: every input record to the output or to the removed file.
    write_start = time.perf_counter()
    against_hits = 0
    is_survivor = np.zeros(total, dtype=bool)
    is_survivor[survivor[survivor >= 0]] = True
    with stage, writer:
        for index, _, row in sources.scan(range(len(inputs))):
            stage.seen()
            if is_survivor[index] and index not in ids:
                ids[index] = record_ids([row.data])[0]
            if not feats.valid[index]:
                field_name, reason = feats.errors[index]
                stage.remove(row, "invalid", field=field_name, error=row.error or reason)
            elif survivor[index] >= 0:
                target = int(survivor[index])
                against_hits += target >= n_in
                stage.remove(
                    row, "duplicate",
                    duplicate_of=ids[target],
                    duplicate_of_source=sources.where(target),
                    kind=clusters.KIND_NAMES[int(kind[index])],
                    similarity=round(float(similarity[index]), 4),
                )
            else:
                writer.write(row.data)
                stage.keep()
        if stage.records_in != n_in:
            raise ThresherError("the inputs changed while dedup was reading them; run it again")
        seconds = time.perf_counter() - start
        phases["write"] = time.perf_counter() - write_start
        removed_kind = np.bincount(kind[:n_in][survivor[:n_in] >= 0], minlength=3)
        stage.extra.update(
            threshold=threshold,
            exact_only=exact_only,
            on=on,
            keep=keep,
            ngram={"cjk": ngram or 3, "word": ngram or 5},
            num_perm=num_perm,
            lsh=None if exact_only else dict(zip(("bands", "rows"), minhash.lsh_params(threshold, num_perm))),
            verify=use_verify and not exact_only,
            duplicates={"exact": int(removed_kind[clusters.EXACT]), "near": int(removed_kind[clusters.NEAR]),
                        "against": against_hits},
            against_records=total - n_in,
            candidate_pairs=verdict.candidate_pairs,
            clusters=verdict.clusters,
            workers=pool.processes,
            records_per_second=round(n_in / seconds, 1) if seconds > 0 else None,
            phase_seconds={name: round(value, 3) for name, value in phases.items()},
            peak_memory_mb=peak_memory_mb(),
        )
        result = stage.stats()
    return {**result, "output": str(output), "removed_file": str(removed_path), "stats_file": str(stats_path)}


def _lookup(indices: np.ndarray, fn: Any, sources: Sources, pool: Workers) -> dict[int, Any]:
    """``fn`` (a worker function over raw rows) of the records at ``indices``: re-reads, computes only those."""
    from thresher.curate.dedup.passes import batches

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


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest worker, in MiB."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024 / 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return {
        "main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, 1),
        "workers": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale, 1),
    }


def print_summary(result: dict[str, Any], console: Any) -> None:
    """One rich table: records in, kept, removed by kind, speed and memory."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="thresher dedup", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right", overflow="fold")
    dup = result["duplicates"]
    rows = [
        ("records in", f"{result['in']:,}"),
        ("kept", f"{result['kept']:,}"),
        ("exact duplicates", f"{dup['exact']:,}"),
        ("near duplicates", f"{dup['near']:,}"),
        ("of these, matching --against", f"{dup['against']:,}"),
        ("invalid", f"{result['removed'].get('invalid', 0):,}"),
        ("seconds", f"{result['seconds']:.2f}"),
        ("records / s", f"{result['records_per_second'] or 0:,.0f}"),
        ("peak memory (MiB)", f"{result['peak_memory_mb']['main']:,.0f} main, "
                              f"{result['peak_memory_mb']['workers']:,.0f} per worker"),
        ("output", escape(result["output"])),
        ("removed", escape(result["removed_file"])),
    ]
    for what, value in rows:
        table.add_row(what, value)
    console.print(table)
