"""``thresher validate``: check record files against the data contract.

Every record is mapped to its canonical kind; each failure is reported as
``file:line: field: reason`` with the field spelled as the source file spells
it. Exit codes: 0 all valid, 1 some record invalid, 2 usage or an input that
cannot be read as a whole.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from thresher.schemas import QA, Dialogue, Record
from thresher.curate.engines import Job
from thresher.curate.engines import add_arguments as add_engine_arguments
from thresher.curate.io.claims import InputPath, OutputPath
from thresher.curate.errors import InputError, RecordError
from thresher.curate.io.formats import FORMATS, looks_like, to_record
from thresher.curate.io.readers import Row
from thresher.curate.io.shards import expand_inputs, plan, read_piece

if TYPE_CHECKING:
    from thresher.curate.engines import Engine
    from thresher.curate.io.shards import Piece

KIND_CHOICES = ("auto", "dialogue", "qa", "preference", "scored", "document")
LISTING_CAP = 50


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


class ValidateJob(Job):
    """Check every row of one piece: (rows read, problems in order, the error that stopped the piece)."""

    def __init__(self, kind: str, fmt: str | None) -> None:
        self.kind, self.fmt = kind, fmt

    def __call__(self, piece: Piece) -> tuple[int, list[Problem], InputError | None]:
        count, problems = 0, []
        try:
            for row in read_piece(piece):
                count += 1
                problem = check_row(row, self.kind, self.fmt)
                if problem is not None:
                    problems.append(problem)
        except InputError as exc:
            return count, problems, exc
        return count, problems, None


def validate_paths(
    paths: Iterable[str],
    kind: str = "auto",
    fmt: str | None = None,
    on_problem: Callable[[Problem], None] | None = None,
    engine: Engine | None = None,
    shard_bytes: int | None = None,
) -> Summary:
    """Validate every record of every path (files, folders, globs); unreadable inputs are collected, not raised.

    The inputs are cut into pieces that ``engine`` checks in parallel (parsing
    and validation are CPU-bound and independent per line); problems still
    come back in file order, so output does not depend on the engine or the
    worker count. A file stops counting at its first unreadable piece.
    """
    from thresher.curate.engines.local import LocalEngine

    summary = Summary()
    files: list[str] = []
    for path in paths:
        try:
            files += expand_inputs([path])
        except InputError as exc:
            summary.files.setdefault(path, FileCounts()).unreadable = True
            summary.unreadable.append(exc)
    pieces = plan(files, shard_bytes)
    stopped: set[str] = set()
    for piece, (count, problems, error) in zip(pieces, (engine or LocalEngine(1)).map(ValidateJob(kind, fmt), pieces)):
        counts = summary.files.setdefault(piece.path, FileCounts())
        if piece.path in stopped:
            continue
        counts.records += count
        counts.invalid += len(problems)
        if counts.sample is None and problems:
            counts.sample = problems[0].record
        summary.problems.extend(problems)
        if on_problem is not None:
            for problem in problems:
                on_problem(problem)
        if error is not None:
            summary.unreadable.append(error)
            counts.unreadable = True
            stopped.add(piece.path)
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=InputPath, metavar="PATH", help="record files, folders of them, globs, datasets folders")
    parser.add_argument("--kind", choices=KIND_CHOICES, default="auto", help="record kind every record must be")
    parser.add_argument("--from", dest="fmt", choices=FORMATS, help="force the record format instead of detecting it")
    parser.add_argument("--rejects", type=OutputPath, metavar="FILE", help="write every invalid record as read, with its error (JSONL)")
    parser.add_argument("--report", type=OutputPath, metavar="FILE", help="write a JSON report of all errors")
    add_engine_arguments(parser, "processes checking pieces of the input")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from thresher.curate.engines import engine_from
    from thresher.curate.io.writers import JsonlWriter, write_json

    engine = engine_from(args)
    if args.rejects:
        with JsonlWriter(args.rejects) as rejects:
            summary = validate_paths(
                args.paths, args.kind, args.fmt, lambda p: rejects.write({**p.as_dict(), "record": p.record}), engine,
            )
    else:
        summary = validate_paths(args.paths, args.kind, args.fmt, engine=engine)
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
