"""The streamed passes of ``thresher dedup``: rows in batches, features on worker processes.

Pass 1 turns every row into a few numbers (valid, exact key, length, keep
score) and a MinHash signature, in batches of ``BATCH`` rows on ``--workers``
processes; only these arrays stay in memory, never the records. Later passes
re-read the files (``Sources.scan``) and recompute what they need for the few
records that need it (shingle sets of candidate pairs).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from thresher.curate.dedup import minhash
from thresher.curate.dedup.shingles import Shingler, exact_key, fold
from thresher.curate.engines.local import ProcessPool
from thresher.curate.errors import RecordError, ThresherError
from thresher.curate.io.readers import Row
from thresher.curate.io.shards import Piece, read_piece

if TYPE_CHECKING:
    from thresher.curate.dedup.partitioned import Context
    from thresher.curate.io.parts import Parts
    from thresher.curate.stage import PieceResult, PieceStage

#: Records per batch sent to a worker: large enough to amortise numpy's per-call cost.
BATCH = 1024


# ---------------------------------------------------------------- keep policy


@dataclass(frozen=True)
class KeepPolicy:
    """Which record of a cluster survives: ``first``, ``longest`` or ``score:FIELD`` (highest)."""

    name: str
    field: str | None = None

    @classmethod
    def parse(cls, text: str) -> KeepPolicy:
        if text in ("first", "longest"):
            return cls(text)
        if text.startswith("score:") and text[6:]:
            return cls("score", text[6:])
        raise ThresherError(f"--keep must be first, longest or score:FIELD, got {text!r}")

    def score(self, data: dict[str, Any]) -> float:
        """The record's ``FIELD`` (dotted paths reach into objects: ``meta.score``); -inf if absent."""
        value: Any = data
        for part in (self.field or "").split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return float("-inf")
        return float(value)

    def rank(self, length: np.ndarray, score: np.ndarray) -> np.ndarray:
        """Rank of each record, 0 = survives first; ties go to the earlier record."""
        index = np.arange(len(length))
        if self.name == "first":
            return index
        primary = -length if self.name == "longest" else -score
        rank = np.empty(len(index), dtype=np.int64)
        rank[np.lexsort((index, primary))] = index
        return rank


# ---------------------------------------------------------------- pass 1: features, on worker processes


@dataclass(frozen=True)
class Settings:
    """What a worker needs to turn raw rows into features."""

    on: str
    ngram: int | None
    num_perm: int
    exact_only: bool
    keep: KeepPolicy


@dataclass
class Features:
    """Per-record arrays of one batch (or, concatenated, of the whole run)."""

    valid: np.ndarray
    key: np.ndarray
    length: np.ndarray
    score: np.ndarray
    shingled: np.ndarray
    sigs: np.ndarray | None
    errors: dict[int, tuple[str, str]] = field(default_factory=dict)
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))  # content ids, 0 if invalid

    @classmethod
    def concat(cls, parts: list[Features], num_perm: int, exact_only: bool) -> Features:
        if not parts:
            empty = cls(*(np.empty(0, dtype=t) for t in (bool, np.uint64, np.int64, np.float64, bool)),
                        None if exact_only else np.empty((0, num_perm), dtype=np.uint32))
            return empty
        errors: dict[int, tuple[str, str]] = {}
        offset = 0
        for part in parts:
            errors.update({offset + i: e for i, e in part.errors.items()})
            offset += len(part.valid)
        return cls(
            *(np.concatenate([getattr(p, name) for p in parts])
              for name in ("valid", "key", "length", "score", "shingled")),
            None if exact_only else np.concatenate([p.sigs for p in parts]),  # type: ignore[misc]
            errors,
            np.concatenate([p.ids for p in parts]),
        )


_SETTINGS: Settings | None = None
_SHINGLER: Shingler | None = None
_CONTEXT: Context | None = None


def init_worker(settings: Settings, context: Context | None = None) -> None:
    """Set this process up for ``settings`` (a pool initializer, and the first call in a Ray task);
    ``context``: the run, which the one-machine dedup's last pass (``write``) needs."""
    global _SETTINGS, _SHINGLER, _CONTEXT
    if settings != _SETTINGS:
        _SETTINGS, _SHINGLER = settings, Shingler.with_ngram(settings.ngram)
    _CONTEXT = context


def _texts(rows: list[dict[str, Any] | None], settings: Settings) -> tuple[list[str | None], list[Any]]:
    """The compared text of each row (None when it cannot be read) and each row's record or error."""
    from thresher.curate.dedup.command import record_text
    from thresher.curate.io.formats import to_record

    texts: list[str | None] = []
    outcomes: list[Any] = []
    for data in rows:
        try:
            if data is None:
                raise RecordError("", "unreadable")
            # Dedup compares text; unfilled {{name}} templates are validate's business, not a reason to drop.
            record = to_record(data, context={"allow_placeholders": True})
            texts.append(record_text(record, settings.on))
            outcomes.append(record)
        except RecordError as exc:
            texts.append(None)
            outcomes.append(exc)
    return texts, outcomes


def features(rows: list[dict[str, Any] | None]) -> Features:
    """Worker: exact key, length, score, signature and content id of each row (a removed record names its
    survivor by id, and computing every id here, on the workers, lets each piece be written anywhere)."""
    settings, shingler = _SETTINGS, _SHINGLER
    assert settings is not None and shingler is not None, "init_worker first"
    texts, outcomes = _texts(rows, settings)
    n = len(rows)
    valid = np.array([t is not None for t in texts], dtype=bool)
    key = np.zeros(n, dtype=np.uint64)
    length = np.zeros(n, dtype=np.int64)
    score = np.full(n, float("-inf"))
    errors = {}
    folded = [fold(t) if t is not None else "" for t in texts]
    for i, (text, outcome, data) in enumerate(zip(texts, outcomes, rows)):
        if text is None:
            errors[i] = (outcome.field, outcome.reason)
            continue
        key[i] = exact_key(folded[i], folded=True)
        length[i] = len(text)
        if settings.keep.name == "score":
            score[i] = settings.keep.score(data)  # type: ignore[arg-type]
    ids = np.array([int(o.id, 16) if t is not None else 0 for t, o in zip(texts, outcomes)], dtype=np.uint64)
    if settings.exact_only:
        return Features(valid, key, length, score, np.zeros(n, dtype=bool), None, errors, ids)
    values, counts = shingler.hashes(folded, folded=True)
    sigs = minhash.signatures(values, counts, settings.num_perm)
    return Features(valid, key, length, score, counts > 0, sigs, errors, ids)


def write(job: tuple[Piece, Parts | None, dict[str, Any], dict[str, np.ndarray]]) -> PieceResult:
    """Worker: the last pass over one piece (``partitioned.write_piece``, as the Ray engine runs it)."""
    from thresher.curate.dedup.partitioned import write_piece

    assert _CONTEXT is not None, "init_worker with the run's context first"
    return write_piece(_CONTEXT, *job)


def shingle_sets(rows: list[dict[str, Any] | None]) -> list[np.ndarray]:
    """Worker: the sorted distinct shingle hashes of each row (for exact Jaccard)."""
    assert _SETTINGS is not None and _SHINGLER is not None, "init_worker first"
    texts, _ = _texts(rows, _SETTINGS)
    return _SHINGLER.shingle_sets([t or "" for t in texts])


class Workers:
    """The passes' process pool (bounded, in order); inline until a full batch shows the input is worth it."""

    def __init__(self, settings: Settings, processes: int, context: Context | None = None) -> None:
        self.settings = settings
        self.processes = processes
        init_worker(settings, context)
        # Started at the first batch worth it, while this process holds no index yet: the workers stay small.
        self._pool = ProcessPool(processes, init_worker, (settings, context))

    def map(self, fn: Any, items: Iterator[Any], worth: Any = lambda batch: len(batch) >= BATCH) -> Iterator[Any]:
        return self._pool.map(fn, items, worth=worth)

    def close(self) -> None:
        self._pool.close()


# ---------------------------------------------------------------- reading the inputs


@dataclass
class Sources:
    """The pieces of one run's files, input files first, then ``--against`` files; global indices span both.

    Pass 1 records each row's file and line and each piece's row count, so
    later passes can re-read single records and the last pass can hand every
    piece the fate of its own rows (one output part per piece).
    """

    pieces: list[Piece]
    file: array = field(default_factory=lambda: array("i"))
    line: array = field(default_factory=lambda: array("q"))
    piece_rows: array = field(default_factory=lambda: array("q"))  # rows read from each piece
    input_records: int = 0

    def __post_init__(self) -> None:
        self.piece_rows.extend([0] * len(self.pieces))

    def scan(self, files: range) -> Iterator[tuple[int, Piece, Row]]:
        """(global index, piece, row) for every row of ``paths[files]``, in order."""
        index = int(np.searchsorted(np.frombuffer(self.file, dtype=np.int32), files.start))  # rows before it
        for piece in self.pieces:
            if piece.file in files:
                for row in read_piece(piece):
                    yield index, piece, row
                    index += 1


def batches(
    rows: Iterator[tuple[int, Piece, Row]], record: Sources | None = None
) -> Iterator[list[dict[str, Any] | None]]:
    """Batches of raw rows; ``record`` remembers each row's file and line, and counts each piece's rows."""
    batch: list[dict[str, Any] | None] = []
    for _, piece, row in rows:
        if record is not None:
            record.file.append(piece.file)
            record.line.append(row.line)
            record.piece_rows[piece.index] += 1
        batch.append(row.data)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def route(out: PieceStage, row: Row, error: tuple[str, str] | None, duplicate: tuple[str, str, str, float] | None) -> None:
    """The last pass, one row: removed as invalid (``error``: field, reason), removed as a duplicate
    (``duplicate``: survivor id, survivor file:line, kind, similarity), or kept as read."""
    if error is not None:
        out.remove(row, "invalid", field=error[0], error=row.error or error[1])
    elif duplicate is not None:
        survivor, source, kind, similarity = duplicate
        out.remove(row, "duplicate", duplicate_of=survivor, duplicate_of_source=source, kind=kind,
                   similarity=round(similarity, 4))
    else:
        out.keep(row.data)
