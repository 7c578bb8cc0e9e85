"""``thresher stats``: what is in a dataset, per file, before training on it.

Per file: record kinds, turns per record, characters (and tokens with
``--tokenizer``) per role (``thresher.curate.text.fields``: system, user,
assistant, tool, tool_call, chosen, rejected, response, text) with min /
median / p95 / max, the language mix by script (``script_language``: Han =
Chinese, Latin = English, anything else or no letters = other), the system prompts used,
exact duplicates (same canonical record id) and empty top-level fields. p95
is the nearest-rank percentile (the value at rank ceil(0.95 n)); median
averages the two middle values of an even count.

The tokenizer is loaded with transformers' ``AutoTokenizer`` from a local
folder only (never the hub), and only when asked for.

Each piece of a file (``thresher.curate.io.shards``) is tallied by a worker
(``--workers`` processes, or Ray with ``--engine ray``; the tokenizer is
loaded once per worker) and the tallies of a file are added up in order, so
every figure, medians and first-seen orders included, is the one a single
pass would give.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thresher.curate.engines import Job
from thresher.curate.engines import add_arguments as add_engine_arguments
from thresher.curate.errors import RecordError, ThresherError
from thresher.curate.io.formats import to_records
from thresher.curate.io.shards import read_piece
from thresher.curate.text.fields import texts_of
from thresher.curate.text.scripts import script_language
from thresher.curate.io.claims import InputPath

if TYPE_CHECKING:
    from thresher.curate.engines import Engine
    from thresher.curate.io.shards import Piece

TOP_SYSTEMS = 5
#: The language mix stats reports: every language but these two counts as ``other``.
LANGUAGES = ("zh", "en", "other")


def summary(values: list[int]) -> dict[str, float] | None:
    """min / median / p95 (nearest rank) / max of ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[math.ceil(0.95 * len(ordered)) - 1],
        "max": ordered[-1],
    }


def is_empty(value: Any) -> bool:
    return value is None or value == [] or value == {} or (isinstance(value, str) and not value.strip())


class TokenCounter:
    """Token lengths from a local tokenizer, encoded in batches."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_dir():
            raise ThresherError(f"--tokenizer {path}: must be a local folder holding a tokenizer")
        from transformers import AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ThresherError(f"--tokenizer {path}: cannot load a tokenizer: {exc}") from None

    def lengths(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]


@dataclass
class Tally:
    """The raw counts of one piece (or, added up, of one file); ``report`` turns them into figures."""

    rows: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=lambda: Counter({lang: 0 for lang in LANGUAGES}))
    systems: Counter[str] = field(default_factory=Counter)
    empty: Counter[str] = field(default_factory=Counter)
    chars: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    tokens: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    turn_counts: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # in order: duplicates are counted across pieces

    def add(self, other: Tally) -> None:
        """Append a later piece's counts (first-seen orders stay those of one pass)."""
        self.rows += other.rows
        for mine, theirs in ((self.kinds, other.kinds), (self.languages, other.languages),
                             (self.systems, other.systems), (self.empty, other.empty)):
            mine.update(theirs)
        for mine_lists, their_lists in ((self.chars, other.chars), (self.tokens, other.tokens)):
            for name, values in their_lists.items():
                mine_lists[name] += values
        self.turn_counts += other.turn_counts
        self.ids += other.ids

    def report(self, path: str, with_tokens: bool) -> dict[str, Any]:
        """Every figure ``thresher stats`` reports for one file."""
        result: dict[str, Any] = {
            "file": path,
            "rows": self.rows,
            "records": sum(n for kind, n in self.kinds.items() if kind != "invalid"),
            "kinds": dict(self.kinds),
            "turns": summary(self.turn_counts),
            "chars": {name: summary(values) for name, values in self.chars.items()},
            "languages": dict(self.languages),
            "system_prompts": {"distinct": len(self.systems), "records": sum(self.systems.values()),
                               "top": [{"text": t, "records": n} for t, n in self.systems.most_common(TOP_SYSTEMS)]},
            "duplicates": len(self.ids) - len(set(self.ids)),
            "empty_fields": dict(self.empty),
        }
        if with_tokens:
            result["tokens"] = {name: summary(values) for name, values in self.tokens.items()}
        return result


class StatsJob(Job):
    """Tally one piece; with ``--tokenizer``, count tokens per field too (the tokenizer loaded once per worker)."""

    def __init__(self, tokenizer: str | None) -> None:
        self.tokenizer = tokenizer
        self.loads_models = tokenizer is not None
        self.tokens: TokenCounter | None = None

    def setup(self) -> None:
        self.tokens = TokenCounter(self.tokenizer) if self.tokenizer else None

    def __call__(self, piece: Piece) -> Tally:
        tally = Tally()
        texts: dict[str, list[str]] = defaultdict(list)
        for row in read_piece(piece):
            tally.rows += 1
            if row.data is None:
                tally.kinds["invalid"] += 1
                continue
            tally.empty.update(key for key, value in row.data.items() if is_empty(value))
            try:
                records = to_records(row.data, context={"allow_placeholders": True})
            except RecordError:
                tally.kinds["invalid"] += 1
                continue
            for record in records:
                tally.kinds[record.kind] += 1
                tally.ids.append(record.id)
                record_texts = texts_of(record)
                tally.turn_counts.append(record_texts.turn_count)
                by_field = record_texts.by_role()
                lang = script_language("\n".join(t for values in by_field.values() for t in values)).lang
                tally.languages[lang if lang in LANGUAGES else "other"] += 1
                if record_texts.system:
                    tally.systems[record_texts.system] += 1
                for name, values in by_field.items():
                    tally.chars[name] += [len(v) for v in values]
                    if self.tokens is not None:
                        texts[name] += values
        if self.tokens is not None:
            for name, values in texts.items():
                tally.tokens[name] = self.tokens.lengths(values)
        return tally


def path_stats(paths: list[str], engine: Engine, tokenizer: str | None = None) -> list[dict[str, Any]]:
    """The figures of every file of ``paths`` (folders and globs expanded), in order."""
    from thresher.curate.io.shards import expand_inputs, plan

    if tokenizer and not Path(tokenizer).is_dir():
        raise ThresherError(f"--tokenizer {tokenizer}: must be a local folder holding a tokenizer")
    pieces = plan(expand_inputs(paths))
    tallies: dict[str, Tally] = {}
    for piece, tally in zip(pieces, engine.map(StatsJob(tokenizer), pieces)):
        tallies.setdefault(piece.path, Tally()).add(tally)
    return [tally.report(path, tokenizer is not None) for path, tally in tallies.items()]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=InputPath, metavar="IN", help="record files, folders of them, globs, datasets folders")
    parser.add_argument("--tokenizer", type=InputPath, metavar="PATH", help="local tokenizer folder: also count tokens per field")
    parser.add_argument("--json", action="store_true", help="print one JSON object per run instead of tables")
    add_engine_arguments(parser, "processes tallying pieces of the input")


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def print_stats(stats: dict[str, Any], console: Any) -> None:
    """One rich table of lengths per field and one of the other figures."""
    from rich.markup import escape
    from rich.table import Table

    lengths = Table(title=f"{escape(stats['file'])}: lengths per field")
    lengths.add_column("field")
    for unit in ("chars", "tokens") if "tokens" in stats else ("chars",):
        for stat in ("min", "median", "p95", "max"):
            lengths.add_column(f"{unit} {stat}", justify="right")
    for name, figures in stats["chars"].items():
        cells = [_fmt(figures[s]) for s in ("min", "median", "p95", "max")]
        if "tokens" in stats:
            tok = stats["tokens"].get(name)
            cells += [_fmt(tok[s]) for s in ("min", "median", "p95", "max")] if tok else ["-"] * 4
        lengths.add_row(name, *cells)
    overview = Table(title=f"{escape(stats['file'])}: overview", show_header=False)
    overview.add_column("figure")
    overview.add_column("value", overflow="fold")
    total = max(stats["records"], 1)
    overview.add_row("rows", str(stats["rows"]))
    overview.add_row("records by kind", ", ".join(f"{k}: {n}" for k, n in stats["kinds"].items()) or "-")
    if stats["turns"]:
        overview.add_row("turns min/median/p95/max", " / ".join(_fmt(stats["turns"][s]) for s in ("min", "median", "p95", "max")))
    overview.add_row("languages", ", ".join(f"{k}: {n} ({n / total:.0%})" for k, n in stats["languages"].items()))
    sp = stats["system_prompts"]
    overview.add_row("system prompts", f"{sp['records']} records, {sp['distinct']} distinct")
    for top in sp["top"]:
        overview.add_row("", escape(f"{top['records']}x {top['text'][:80]}"))
    overview.add_row("exact duplicates", str(stats["duplicates"]))
    overview.add_row("empty fields", ", ".join(f"{k}: {n}" for k, n in stats["empty_fields"].items()) or "none")
    console.print(overview)
    console.print(lengths)


def run(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from thresher.curate.engines import engine_from

    results = path_stats(args.paths, engine_from(args), args.tokenizer)
    if args.json:
        print(json.dumps({"files": results}, ensure_ascii=False, indent=2))
        return 0
    console = Console()
    for stats in results:
        print_stats(stats, console)
    return 0
