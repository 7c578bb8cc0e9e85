"""``thresher validate``: check record files against the data contract.

Every record is mapped to its canonical kind; each failure is reported as
``file:line: field: reason`` with the field spelled as the source file spells
it. Exit codes: 0 all valid, 1 some record invalid, 2 usage or an input that
cannot be read as a whole.
"""

from __future__ import annotations

import argparse
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from thresher.schemas import QA, Dialogue, Record
from thresher.curate.errors import InputError, RecordError
from thresher.curate.io.formats import FORMATS, looks_like, to_record
from thresher.curate.io.readers import Row, Shard, file_type, jsonl_shards, read_jsonl_shard, read_rows
from thresher.curate.io.claims import InputPath, OutputPath

KIND_CHOICES = ("auto", "dialogue", "qa", "preference", "scored", "document")
LISTING_CAP = 50
#: JSONL files at least this large are validated by worker processes.
PARALLEL_MIN_BYTES = 4 << 20
SHARD_BYTES = 4 << 20


@dataclass(slots=True)
class Problem:
    """One invalid record: where it is, which field, why, and the record as read."""

    file: str
    line: int
    field: str
    reason: str
    record: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field or '(record)'}: {self.reason}"


@dataclass
class FileCounts:
    records: int = 0
    invalid: int = 0
    sample: Any = None  # the first invalid record as read: what an all-invalid file looks like
    unreadable: bool = False


@dataclass
class Summary:
    """Counts per file and per reason, every problem, and inputs that failed whole."""

    files: dict[str, FileCounts] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    unreadable: list[InputError] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(c.records for c in self.files.values())

    @property
    def invalid(self) -> int:
        return len(self.problems)

    @property
    def valid(self) -> int:
        return self.total - self.invalid

    def reasons(self) -> Counter[str]:
        return Counter(reason_category(p.reason) for p in self.problems)

    def report(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "valid": self.valid,
            "invalid": self.invalid,
            "errors": [p.as_dict() for p in self.problems],
            "unreadable": [str(e) for e in self.unreadable],
        }


def reason_category(reason: str) -> str:
    """Group reasons for the summary by dropping the record-specific tail."""
    return re.sub(r"\s*[\(\{\[<'\"].*$", "", reason) or reason


def kind_mismatch(record: Record, kind: str) -> str | None:
    """Why ``record`` is not of the requested ``--kind``, or None when it is."""
    if kind == "auto" or record.kind == kind:
        return None
    if kind == "dialogue" and isinstance(record, QA):
        return None
    if kind == "qa" and isinstance(record, Dialogue):
        turns = [m for m in record.messages if m.role != "system"]
        if len(turns) == 2 and not any(m.tool_calls for m in turns):
            return None
    return f"expected a {kind} record, got {record.kind}"


def check_row(row: Row, kind: str = "auto", fmt: str | None = None) -> Problem | None:
    """Validate one row; return its problem or None when it holds."""
    if row.data is None:
        return Problem(row.source, row.line, "", row.error or "unreadable", row.raw)
    try:
        record = to_record(row.data, fmt)
    except RecordError as exc:
        return Problem(row.source, row.line, exc.field, exc.reason, row.data)
    mismatch = kind_mismatch(record, kind)
    return Problem(row.source, row.line, "", mismatch, row.data) if mismatch else None


def default_workers() -> int:
    """Worker processes for large JSONL inputs: the cores this process may use, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, 8))


def validate_paths(
    paths: Iterable[str],
    kind: str = "auto",
    fmt: str | None = None,
    on_problem: Callable[[Problem], None] | None = None,
    workers: int = 1,
) -> Summary:
    """Validate every record of every path; unreadable inputs are collected, not raised.

    Large JSONL files are checked by ``workers`` processes (parsing and
    validation are CPU-bound and independent per line); problems still come
    back in file order, so output does not depend on the worker count.
    """
    summary = Summary()
    for path in paths:
        counts = summary.files.setdefault(path, FileCounts())
        try:
            for count, problems in _check_file(path, kind, fmt, workers):
                counts.records += count
                counts.invalid += len(problems)
                if counts.sample is None and problems:
                    counts.sample = problems[0].record
                summary.problems.extend(problems)
                if on_problem is not None:
                    for problem in problems:
                        on_problem(problem)
        except InputError as exc:
            summary.unreadable.append(exc)
            counts.unreadable = True
    return summary


def _check_file(path: str, kind: str, fmt: str | None, workers: int) -> Iterator[tuple[int, list[Problem]]]:
    """Yield (records checked, problems) per shard (parallel) or per record."""
    if workers > 1 and _worth_parallel(path):
        import multiprocessing

        with multiprocessing.Pool(workers) as pool:
            yield from pool.imap(partial(_check_shard, path, kind, fmt), jsonl_shards(path, SHARD_BYTES))
        return
    for row in read_rows(path):
        problem = check_row(row, kind, fmt)
        yield 1, [problem] if problem else []


def _worth_parallel(path: str) -> bool:
    try:
        return file_type(path) == (".jsonl", False) and Path(path).stat().st_size >= PARALLEL_MIN_BYTES
    except (InputError, OSError):
        return False  # let the sequential reader report it


def _check_shard(source: str, kind: str, fmt: str | None, shard: Shard) -> tuple[int, list[Problem]]:
    """Worker: read, parse and check one shard of a JSONL file."""
    count, problems = 0, []
    for row in read_jsonl_shard(source, shard):
        count += 1
        problem = check_row(row, kind, fmt)
        if problem is not None:
            problems.append(problem)
    return count, problems


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=InputPath, metavar="PATH", help="record files or datasets folders")
    parser.add_argument("--kind", choices=KIND_CHOICES, default="auto", help="record kind every record must be")
    parser.add_argument("--from", dest="fmt", choices=FORMATS, help="force the record format instead of detecting it")
    parser.add_argument("--rejects", type=OutputPath, metavar="FILE", help="write every invalid record as read, with its error (JSONL)")
    parser.add_argument("--report", type=OutputPath, metavar="FILE", help="write a JSON report of all errors")
    parser.add_argument(
        "--workers", type=int, default=default_workers(), metavar="N",
        help="processes for large JSONL files (default: usable cores, at most 8)",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from thresher.curate.io.writers import JsonlWriter, write_json

    if args.rejects:
        with JsonlWriter(args.rejects) as rejects:
            summary = validate_paths(
                args.paths, args.kind, args.fmt,
                lambda p: rejects.write({**p.as_dict(), "record": p.record}),
                args.workers,
            )
    else:
        summary = validate_paths(args.paths, args.kind, args.fmt, workers=args.workers)
    if args.report:
        write_json(args.report, summary.report())
    print_summary(summary, Console())
    warn_inputs(summary, args.fmt)
    if summary.unreadable:
        return 2
    return 1 if summary.invalid else 0


def warn_inputs(summary: Summary, forced: str | None) -> None:
    """One line for each empty input, and for each input whose every record is invalid, what it looks like."""
    import sys

    for path, counts in summary.files.items():
        if counts.records == 0 and not counts.unreadable:
            print(f"warning: {path}: no records", file=sys.stderr)
        elif counts.records and counts.invalid == counts.records:
            print(f"error: every record of {path} is invalid; {looks_like(counts.sample, forced)}", file=sys.stderr)


def print_summary(summary: Summary, console: Any) -> None:
    """A rich table per file and per reason, then the first problems one per line."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="thresher validate")
    for column in ("file", "records", "valid", "invalid"):
        table.add_column(column, justify="left" if column == "file" else "right", overflow="fold")
    for path, counts in summary.files.items():
        table.add_row(escape(path), str(counts.records), str(counts.records - counts.invalid), str(counts.invalid))
    table.add_row("total", str(summary.total), str(summary.valid), str(summary.invalid), style="bold")
    console.print(table)
    if summary.problems:
        reasons = Table(title="invalid by reason")
        reasons.add_column("reason")
        reasons.add_column("records", justify="right")
        for reason, count in summary.reasons().most_common():
            reasons.add_row(escape(reason), str(count))
        console.print(reasons)
        for problem in summary.problems[:LISTING_CAP]:
            console.print(escape(str(problem)), highlight=False, soft_wrap=True)
        if summary.invalid > LISTING_CAP:
            console.print(f"... and {summary.invalid - LISTING_CAP} more (see --report)")
    for error in summary.unreadable:
        console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
