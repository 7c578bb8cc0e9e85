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
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from thresher.curate.errors import RecordError, ThresherError
from thresher.curate.io.formats import to_records
from thresher.curate.io.readers import read_rows
from thresher.curate.text.fields import texts_of
from thresher.curate.text.scripts import script_language
from thresher.curate.io.claims import InputPath

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


def file_stats(path: str, tokens: TokenCounter | None = None) -> dict[str, Any]:
    """Every figure ``thresher stats`` reports for one file."""
    kinds: Counter[str] = Counter()
    languages: Counter[str] = Counter({lang: 0 for lang in LANGUAGES})
    systems: Counter[str] = Counter()
    empty: Counter[str] = Counter()
    chars: dict[str, list[int]] = defaultdict(list)
    texts: dict[str, list[str]] = defaultdict(list)
    turn_counts: list[int] = []
    seen: set[str] = set()
    rows = duplicates = 0
    for row in read_rows(path):
        rows += 1
        if row.data is None:
            kinds["invalid"] += 1
            continue
        empty.update(key for key, value in row.data.items() if is_empty(value))
        try:
            records = to_records(row.data, context={"allow_placeholders": True})
        except RecordError:
            kinds["invalid"] += 1
            continue
        for record in records:
            kinds[record.kind] += 1
            duplicates += record.id in seen
            seen.add(record.id)
            record_texts = texts_of(record)
            turn_counts.append(record_texts.turn_count)
            by_field = record_texts.by_role()
            lang = script_language("\n".join(t for values in by_field.values() for t in values)).lang
            languages[lang if lang in LANGUAGES else "other"] += 1
            if record_texts.system:
                systems[record_texts.system] += 1
            for name, values in by_field.items():
                chars[name] += [len(v) for v in values]
                if tokens is not None:
                    texts[name] += values
    result: dict[str, Any] = {
        "file": path,
        "rows": rows,
        "records": sum(n for kind, n in kinds.items() if kind != "invalid"),
        "kinds": dict(kinds),
        "turns": summary(turn_counts),
        "chars": {name: summary(values) for name, values in chars.items()},
        "languages": dict(languages),
        "system_prompts": {"distinct": len(systems), "records": sum(systems.values()),
                           "top": [{"text": t, "records": n} for t, n in systems.most_common(TOP_SYSTEMS)]},
        "duplicates": duplicates,
        "empty_fields": dict(empty),
    }
    if tokens is not None:
        result["tokens"] = {name: summary(tokens.lengths(values)) for name, values in texts.items()}
    return result


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=InputPath, metavar="IN", help="record files or datasets folders")
    parser.add_argument("--tokenizer", type=InputPath, metavar="PATH", help="local tokenizer folder: also count tokens per field")
    parser.add_argument("--json", action="store_true", help="print one JSON object per run instead of tables")


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

    tokens = TokenCounter(args.tokenizer) if args.tokenizer else None
    results = [file_stats(path, tokens) for path in args.paths]
    if args.json:
        print(json.dumps({"files": results}, ensure_ascii=False, indent=2))
        return 0
    console = Console()
    for stats in results:
        print_stats(stats, console)
    return 0
