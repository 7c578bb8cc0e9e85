"""The conventions every keep-or-drop stage follows (the conservation rule).

Every record that enters a stage leaves it either in the output, in the shape
it came in, or in the stage's removed file with a machine-readable reason.
Each stage also writes a small stats JSON: records in, kept, removed by
reason, seconds. ``Stage`` does the bookkeeping so stages only decide.

Removed-file lines look like::

    {"reason": "duplicate", "detail": {"duplicate_of": "…"}, "file": "a.jsonl", "line": 7, "record": {…}}

where ``record`` is the row as read (or the raw text of an unparsable line).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from thresher.schemas import Record
from thresher.curate.errors import RecordError
from thresher.curate.io.formats import to_record
from thresher.curate.io.claims import check_output
from thresher.curate.io.readers import Row, read_rows
from thresher.curate.io.writers import JsonlWriter, write_json

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

    def __init__(self, name: str, removed_path: str | Path, stats_path: str | Path | None = None) -> None:
        self.name = name
        self.stats_path = Path(stats_path) if stats_path else None
        if self.stats_path is not None:
            check_output(self.stats_path)  # now, not when the stats are written after the output
        self.records_in = 0
        self.kept = 0
        self.removed: Counter[str] = Counter()
        self.extra: dict[str, Any] = {}
        self._removed_writer = JsonlWriter(removed_path)
        self._start = time.perf_counter()

    def __enter__(self) -> Stage:
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
        self._removed_writer.write(
            {
                "reason": reason,
                "detail": detail,
                "file": row.source,
                "line": row.line,
                "record": row.data if row.data is not None else row.raw,
            }
        )

    def records(self, paths: Iterable[str | Path], fmt: str | None = None) -> Iterator[tuple[Record, Row]]:
        """Every row of ``paths`` as its canonical record, counted in; rows that are not JSON
        objects go to the removed file as ``unreadable`` and rows that break the contract as
        ``invalid`` (with the field and the error), so callers only see valid records."""
        for path in paths:
            for row in read_rows(path):
                self.seen()
                if row.data is None:
                    self.remove(row, "unreadable", error=row.error)
                    continue
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
        self._removed_writer.__exit__(exc_type, *rest)
        if exc_type is not None:
            return
        stats = self.stats()
        if stats["in"] != stats["kept"] + stats["removed_total"]:
            raise AssertionError(f"{self.name}: {stats['in']} in != {stats['kept']} kept + {stats['removed_total']} removed")
        if self.stats_path is not None:
            write_json(self.stats_path, stats)
