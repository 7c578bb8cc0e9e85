"""The conventions every keep-or-drop stage follows (the conservation rule).

Every record that enters a stage leaves it either in the output, in the shape
it came in, or in the stage's removed file with a machine-readable reason.
Each stage also writes a small stats JSON: records in, kept, removed by
reason, seconds. ``Stage`` does the bookkeeping so stages only decide.

Removed-file lines look like::

    {"reason": "duplicate", "detail": {"duplicate_of": "…"}, "file": "a.jsonl", "line": 7, "record": {…}}

where ``record`` is the row as read (or the raw text of an unparsable line).

At scale a stage runs piece by piece (``thresher.curate.engines``): a
``PieceStage`` keeps the books of one piece inside a worker, writing that
piece's part files or holding its records for the driver, and the driver's
``Stage`` sums the pieces (``absorb``) and checks the rule again over all of
them; ``run_pieces`` is that loop.
"""

from __future__ import annotations

import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thresher.schemas import Record
from thresher.curate.errors import RecordError
from thresher.curate.io.formats import to_record
from thresher.curate.io.claims import check_output
from thresher.curate.io.readers import Row, read_rows
from thresher.curate.io.writers import JsonlWriter, RecordWriter, write_json

if TYPE_CHECKING:
    from thresher.curate.engines import Engine, Job
    from thresher.curate.io.parts import Parts
    from thresher.curate.io.shards import Piece

#: The one key thresher adds to a kept record (scores, provenance, decisions).
META_KEY = "meta"


def with_meta(data: dict[str, Any], **info: Any) -> dict[str, Any]:
    """A copy of ``data`` whose ``meta`` object also holds ``info``."""
    existing = data.get(META_KEY)
    meta = {**existing, **info} if isinstance(existing, dict) else dict(info)
    return {**data, META_KEY: meta}


def default_sidecar(output: str | Path, kind: str) -> Path:
    """``out.jsonl`` -> ``out.removed.jsonl`` / ``out.stats.json``: beside the output."""
    out = Path(output)
    name = out.name
    for suffix in (".gz", ".jsonl", ".json", ".parquet", ".csv", ".tsv"):
        name = name.removesuffix(suffix)
    return out.with_name(f"{name}.{kind}.json" if kind == "stats" else f"{name}.{kind}.jsonl")


class Stage:
    """Counts and the removed file of one stage run; use as a context manager.

    ``keep`` and ``remove`` are the only two ways out; on exit the stats are
    written and ``records_in == kept + removed`` is checked.
    """

    def __init__(self, name: str, removed_path: str | Path | None, stats_path: str | Path | None = None) -> None:
        self.name = name
        self.stats_path = Path(stats_path) if stats_path else None
        if self.stats_path is not None:
            check_output(self.stats_path)  # now, not when the stats are written after the output
        self.records_in = 0
        self.kept = 0
        self.removed: Counter[str] = Counter()
        self.extra: dict[str, Any] = {}
        # None: the removed records go to part files that the workers write (sharded output).
        self._removed_writer = JsonlWriter(removed_path) if removed_path is not None else None
        self._start = time.perf_counter()

    def __enter__(self) -> Stage:
        if self._removed_writer is not None:
            self._removed_writer.__enter__()
        return self

    def seen(self, count: int = 1) -> None:
        """Count records entering the stage."""
        self.records_in += count

    def keep(self, count: int = 1) -> None:
        """Count records written to the output (the caller writes them)."""
        self.kept += count

    def remove(self, row: Row, reason: str, **detail: Any) -> None:
        """Write ``row`` to the removed file with ``reason`` and its measured ``detail``."""
        self.removed[reason] += 1
        assert self._removed_writer is not None, "a sharded stage's removed records are in its parts"
        self._removed_writer.write(removed_entry(row, reason, detail))

    def absorb(self, result: PieceResult, writer: Any = None) -> None:
        """Add one piece's counts; write the records it held (one output file) with ``writer``."""
        self.records_in += result.records_in
        self.kept += result.kept
        self.removed.update(result.removed)
        for key, value in result.extra.items():  # stage-specific counts: summed across pieces
            if isinstance(value, Counter):
                self.extra.setdefault(key, Counter()).update(value)
            else:
                self.extra[key] = self.extra.get(key, 0) + value
        if result.kept_rows is not None:
            for data in result.kept_rows:
                writer.write(data)
        if result.removed_rows is not None:
            assert self._removed_writer is not None
            for entry in result.removed_rows:
                self._removed_writer.write(entry)

    def rows(self, paths: Iterable[str | Path]) -> Iterator[Row]:
        """Every row of ``paths`` that is a JSON object, counted in; the rest go to the removed
        file as ``unreadable``."""
        for path in paths:
            for row in read_rows(path):
                self.seen()
                if row.data is None:
                    self.remove(row, "unreadable", error=row.error)
                    continue
                yield row

    def records(self, paths: Iterable[str | Path], fmt: str | None = None) -> Iterator[tuple[Record, Row]]:
        """Every row of ``paths`` as its canonical record, counted in; unreadable rows and rows
        that break the contract (``invalid``, with the field and the error) go to the removed
        file, so callers only see valid records."""
        for row in self.rows(paths):
            try:
                record = to_record(row.data, fmt)
            except RecordError as exc:
                self.remove(row, "invalid", field=exc.field, error=exc.reason)
                continue
            yield record, row

    def stats(self) -> dict[str, Any]:
        """The stats JSON's content."""
        return {
            "stage": self.name,
            "in": self.records_in,
            "kept": self.kept,
            "removed": dict(self.removed),
            "removed_total": sum(self.removed.values()),
            "seconds": round(time.perf_counter() - self._start, 3),
            **self.extra,
        }

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if self._removed_writer is not None:
            self._removed_writer.__exit__(exc_type, *rest)
        if exc_type is not None:
            return
        stats = self.stats()
        check_conserved(self.name, stats)
        if self.stats_path is not None:
            write_json(self.stats_path, stats)


def check_conserved(name: str, stats: dict[str, Any]) -> None:
    """The conservation rule, on a stats object: in == kept + removed."""
    if stats["in"] != stats["kept"] + stats["removed_total"]:
        raise AssertionError(f"{name}: {stats['in']} in != {stats['kept']} kept + {stats['removed_total']} removed")


def removed_entry(row: Row, reason: str, detail: dict[str, Any]) -> dict[str, Any]:
    """One line of a removed file: reason, measured detail, file, line and the record as read."""
    return {"reason": reason, "detail": detail, "file": row.source, "line": row.line,
            "record": row.data if row.data is not None else row.raw}


def peak_memory_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MiB of this process (or, ``RUSAGE_CHILDREN``, of its largest child);
    ``ru_maxrss`` is KiB on Linux, bytes on macOS."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024 / 1024
    return round(resource.getrusage(who).ru_maxrss * scale, 1)


@dataclass
class PieceResult:
    """What one piece of a stage did: its counts, and the records it held for the driver to write
    (``None`` when the worker wrote them to part files itself)."""

    index: int
    records_in: int = 0
    kept: int = 0
    removed: Counter[str] = field(default_factory=Counter)
    kept_rows: list[Any] | None = None
    removed_rows: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    note: Any = None  # what the stage's driver combines itself, by piece (convert: the input's tally)
    peak_memory_mb: float = 0.0


class PieceStage:
    """``Stage``'s bookkeeping for one piece, inside a worker; use as a context manager.

    With ``parts`` the kept and removed records go straight to this piece's
    part files (atomically, so a retried piece rewrites them whole) and its
    stats part is written last; without, they are held in the result for the
    driver to write to the one output file, in piece order.
    """

    def __init__(self, name: str, piece: Piece, parts: Parts | None = None) -> None:
        self.name, self.piece, self.parts = name, piece, parts
        self.result = PieceResult(piece.index)
        self._kept: Any = None
        self._removed: Any = None
        if parts is None:
            self.result.kept_rows, self.result.removed_rows = [], []
        else:
            self._kept = RecordWriter(parts.kept_part(piece.index))
            self._removed = RecordWriter(parts.removed_part(piece.index))

    def __enter__(self) -> PieceStage:
        if self._kept is not None:
            self._kept.__enter__()
            self._removed.__enter__()
        return self

    def seen(self, count: int = 1) -> None:
        self.result.records_in += count

    def keep(self, data: Any) -> None:
        """Keep one record (a row to write; what ``writer.write`` takes)."""
        self.result.kept += 1
        if self._kept is not None:
            self._kept.write(data)
        else:
            self.result.kept_rows.append(data)  # type: ignore[union-attr]

    def remove(self, row: Row, reason: str, **detail: Any) -> None:
        self.result.removed[reason] += 1
        entry = removed_entry(row, reason, detail)
        if self._removed is not None:
            self._removed.write(entry)
        else:
            self.result.removed_rows.append(entry)  # type: ignore[union-attr]

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if self._kept is not None:
            self._kept.__exit__(exc_type, *rest)
            self._removed.__exit__(exc_type, *rest)
        self.result.peak_memory_mb = peak_memory_mb()
        if exc_type is not None:
            return
        stats = {"stage": self.name, "piece": self.piece.index, "file": self.piece.path,
                 "first_line": self.piece.first_line, "in": self.result.records_in, "kept": self.result.kept,
                 "removed": dict(self.result.removed), "removed_total": sum(self.result.removed.values())}
        check_conserved(f"{self.name} piece {self.piece.index}", stats)
        if self.parts is not None:
            write_json(self.parts.stats_part(self.piece.index), stats)


def run_pieces(
    name: str,
    engine: Engine,
    job: Job,
    pieces: list[Piece],
    output: str,
    removed: str | None = None,
    stats: str | None = None,
    extra: dict[str, Any] | None = None,
    finish: Callable[[Stage], None] | None = None,
    removed_name: str = "removed",
    on_note: Callable[[Piece, Any], None] | None = None,
) -> Stage:
    """Run a keep-or-drop ``job`` over ``pieces`` on ``engine`` into ``output``; returns the finished Stage.

    A folder ``output`` (see ``thresher.curate.io.parts``) is written part by
    part by the workers and summed here; a file ``output`` is written here, in
    piece order, from what the workers held. Either way the stats are summed
    over pieces and ``in == kept + removed`` is checked per piece and in total.
    ``finish(stage)`` turns the summed extras into their final form before the
    stats are written; ``on_note(piece, note)`` receives each piece's own note.
    """
    from contextlib import nullcontext

    from thresher.curate.io.parts import Parts, is_folder_output

    parts = Parts.of(output, removed, stats, removed_name) if is_folder_output(output) else None
    if parts is not None:
        parts.check_inputs([piece.path for piece in pieces])
        stage = Stage(name, None, parts.stats)
        writer: Any = nullcontext()
    else:
        stage = Stage(name, removed or default_sidecar(output, removed_name), stats or default_sidecar(output, "stats"))
        writer = RecordWriter(output)
    job.parts = parts
    with stage, writer as opened:
        stage.extra.update(extra or {})
        for piece, result in zip(pieces, engine.map(job, pieces)):
            stage.absorb(result, opened)
            if on_note is not None:
                on_note(piece, result.note)
        stage.extra.update(engine=engine.name, workers=engine.workers)
        if parts is not None:
            parts.remove_stale(len(pieces))
            stage.extra["parts"] = len(pieces)
        if finish is not None:
            finish(stage)
    return stage
