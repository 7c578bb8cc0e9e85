"""``thresher dedup``: remove exact and near-duplicate records, Chinese-aware.

Two stages over the same streamed pass. Exact: a hash of the normalised text
(NFKC, case-folded, punctuation stripped, whitespace collapsed; see
``shingles.normalize``). Near: MinHash signatures of script-aware shingles
(CJK character n-grams, word n-grams elsewhere) and LSH banding with the
bands and rows datasketch chooses for the threshold; candidate pairs are
checked with the exact Jaccard of their shingle sets (``--verify``, on by
default below a million records) or the MinHash estimate.

The input is streamed, never held, and every record ends either in the
output, in the shape it came in, or in the removed file with ``reason:
"duplicate"``, the survivor's id and source, the kind (exact or near) and the
similarity. On one machine (``local.py``) one index of per-record numbers and
signatures decides everything at once; with ``--engine ray``
(``distributed.py``) the same decision is partitioned over a Ray cluster
(a shuffle by exact key, a shuffle by LSH band key, connected components by
label propagation) and keeps exactly the same records. ``passes.py`` holds
what both read and compute per record, ``clusters.py`` the decision.

``clusters.duplicate_of(texts)`` is the same machinery for a list of strings
in memory, for stages that deduplicate what they generate (paraphrased
questions, say).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thresher.curate.engines import add_arguments as add_engine_arguments
from thresher.curate.errors import RecordError, ThresherError
from thresher.curate.text.fields import texts_of
from thresher.schemas import Document, Record
from thresher.curate.io.claims import InputPath, OutputPath

if TYPE_CHECKING:
    from thresher.curate.dedup.passes import Settings
    from thresher.curate.engines import Engine
    from thresher.curate.io.parts import Parts
    from thresher.curate.io.shards import Piece
    from thresher.curate.stage import Stage

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
    parser.add_argument("inputs", nargs="+", type=InputPath, metavar="IN", help="record files, folders of them, globs, datasets folders")
    parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="OUT",
                        help="kept records (.jsonl or .json, optionally .gz), or a folder OUT/ for one part per piece")
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
    parser.add_argument("--removed", type=OutputPath, metavar="FILE", help="removed records with reasons (default: OUT.removed.jsonl; "
                        "a folder for OUT/)")
    parser.add_argument("--stats", type=OutputPath, metavar="FILE", help="stats JSON (default: OUT.stats.json)")
    add_engine_arguments(parser, "processes computing signatures")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from thresher.curate.engines import engine_from

    engine = engine_from(args)
    result = dedup(
        args.inputs, args.output,
        threshold=args.threshold, exact_only=args.exact_only, on=args.on, ngram=args.ngram,
        num_perm=args.num_perm, keep=args.keep, verify=args.verify, against=args.against,
        removed=args.removed, stats=args.stats, workers=engine.workers, engine=engine,
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
    engine: Engine | None = None,
) -> dict[str, Any]:
    """Deduplicate ``inputs`` into ``output``; returns the stats (also written as JSON).

    ``engine``: None or the local engine runs on this machine with ``workers``
    processes; a Ray engine runs the partitioned dedup on its cluster (and
    ``distributed.Serial`` the same task graph in this process).
    """
    from thresher.curate.dedup import clusters, minhash
    from thresher.curate.dedup.passes import KeepPolicy, Settings
    from thresher.curate.dedup.shingles import prepare
    from thresher.curate.io.parts import Parts, is_folder_output
    from thresher.curate.io.shards import expand_inputs, plan
    from thresher.curate.io.writers import RecordWriter
    from thresher.curate.stage import default_sidecar

    clusters.check_threshold(threshold)
    if num_perm < 2:
        raise ThresherError(f"--num-perm must be at least 2, got {num_perm}")
    policy = KeepPolicy.parse(keep)
    if on not in ON_CHOICES:
        raise ThresherError(f"--on must be one of {', '.join(ON_CHOICES)}, got {on!r}")
    parts = Parts.of(output, removed, stats) if is_folder_output(output) else None
    if parts is None:
        RecordWriter(output)  # refuses an unknown suffix before any work
    if not exact_only:
        minhash.lsh_params(threshold, num_perm)  # fail early, and before forking
    prepare()
    input_files = expand_inputs(inputs)
    paths = [*input_files, *(expand_inputs(against) if against else [])]
    pieces = plan(paths)
    if parts is not None:
        parts.check_inputs(paths)
    run = Run(
        paths, len(input_files), pieces, sum(piece.file < len(input_files) for piece in pieces),
        Settings(on, ngram, num_perm, exact_only, policy), threshold, verify, keep, output, parts,
        parts.removed if parts else Path(removed or default_sidecar(output, "removed")),
        parts.stats if parts else Path(stats or default_sidecar(output, "stats")),
    )
    if engine is None or engine.name == "local":
        from thresher.curate.dedup.local import dedup_local

        result = dedup_local(run, engine.workers if engine is not None else workers)
    else:  # Ray (or distributed.Serial): the partitioned task graph
        from thresher.curate.dedup.distributed import dedup_partitioned

        result = dedup_partitioned(run, engine)
    return {**result, "output": str(output), "removed_file": str(run.removed), "stats_file": str(run.stats)}


@dataclass
class Run:
    """One dedup run: its files (inputs, then ``--against``), pieces, settings and outputs; what the
    one-machine and the partitioned dedup share."""

    paths: list[str]
    inputs: int  # how many of ``paths`` are inputs
    pieces: list[Piece]
    input_pieces: int  # the input files' pieces come first
    settings: Settings
    threshold: float
    verify: bool | None
    keep: str
    output: str
    parts: Parts | None
    removed: Path  # a file, or for sharded output a folder
    stats: Path

    def use_verify(self, records: int) -> bool:
        """Exact Jaccard for candidate pairs: ``--verify``, or by default below ``VERIFY_BELOW`` records."""
        verify = (records < VERIFY_BELOW) if self.verify is None else self.verify
        return verify and not self.settings.exact_only

    def stage(self) -> Stage:
        from thresher.curate.stage import Stage

        return Stage("dedup", None if self.parts else self.removed, self.stats)

    def writer(self) -> Any:
        from thresher.curate.io.writers import RecordWriter

        return nullcontext() if self.parts else RecordWriter(self.output)

    def finish(self, stage: Stage, start: float, phases: dict[str, float], *, worker_memory: float | None,
               **figures: Any) -> None:
        """The stats every dedup reports, whichever engine ran it."""
        from thresher.curate.dedup import minhash

        settings = self.settings
        seconds = time.perf_counter() - start
        if self.parts is not None:
            self.parts.remove_stale(self.input_pieces)
            stage.extra["parts"] = self.input_pieces
        stage.extra.update(
            threshold=self.threshold,
            exact_only=settings.exact_only,
            on=settings.on,
            keep=self.keep,
            ngram={"cjk": settings.ngram or 3, "word": settings.ngram or 5},
            num_perm=settings.num_perm,
            lsh=None if settings.exact_only
            else dict(zip(("bands", "rows"), minhash.lsh_params(self.threshold, settings.num_perm))),
            **figures,
            records_per_second=round(stage.records_in / seconds, 1) if seconds > 0 else None,
            phase_seconds={name: round(value, 3) for name, value in phases.items()},
            peak_memory_mb=peak_memory(worker_memory),
        )


def peak_memory(workers: float | None = None) -> dict[str, float]:
    """Peak resident memory (MiB) of this process and of the largest worker: this machine's child
    processes, or what Ray's workers reported."""
    import resource

    from thresher.curate.stage import peak_memory_mb

    return {"main": peak_memory_mb(),
            "workers": peak_memory_mb(resource.RUSAGE_CHILDREN) if workers is None else workers}


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
