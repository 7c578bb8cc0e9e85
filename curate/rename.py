"""``thresher rename``: fill identity placeholders and rewrite names in every record.

LLaMA-Factory's ``identity.json`` ships with ``{{name}}`` / ``{{author}}``;
the XTuner tutorial rewrites a name with a one-off ``change_script.py``. This
command does both over any record file thresher reads, recursively through
every string value of every record (keys are left alone), and:

* ``--set name=X`` fills every common spelling of the slot: ``{{name}}``,
  ``{{ NAME }}``, ``{NAME}``, ``<NAME>``, ``<<NAME>>``, ``[NAME]``, and the slot's
  synonyms (``{{model_name}}``, ``{{bot_name}}``, ``{{名字}}`` ... for name;
  ``{{company}}``, ``{{developer}}``, ``{{作者}}`` ... for author) unless set separately;
* ``--set name_en=X`` (any slot with a language suffix: ``_zh``, ``_en``, ``_ja`` ...) fills that
  slot in the records of that language only, so LLaMA-Factory's bilingual
  ``identity.json`` gets ``--set name=小州 --set name_en=Xiaozhou``: Chinese
  records say 小州, English ones Xiaozhou (a record's language is the script
  most of its text is in); the literal ``{{name_en}}`` slot is filled everywhere;
* ``--replace OLD=NEW`` rewrites a literal string everywhere;
* reports how many strings changed, and fails (exit 1, no output written)
  if any placeholder is left, naming file, line and placeholder.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from thresher.schemas import find_placeholder
from thresher.curate.errors import InputError, ThresherError
from thresher.curate.io.claims import InputPath, OutputPath

#: Slot words that mean the same thing; ``--set name=X`` fills all of them.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "name": ("name", "model_name", "bot_name", "assistant_name", "ai_name", "your_name", "名字", "名称"),
    "author": ("author", "company", "company_name", "organization", "organisation", "org", "creator",
               "developer", "owner", "作者", "公司", "开发者"),
}

LISTING_CAP = 20
_SLOT = re.compile(r"\{\{[^{}]*\}\}|\{[A-Z_]+\}|<<?[A-Z_]+>>?|\[[A-Z_]+\]")
#: Suffixes that make a ``--set`` key language-specific (``name_en``).
LANGUAGE_SUFFIXES = ("zh", "en", "ja", "ko", "ru", "ar", "hi", "th", "el", "he")


class PlaceholdersLeft(ThresherError):
    """Placeholders survived the fill: training on them would teach the model a literal ``{{name}}``."""

    exit_code = 1


def _pair(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ThresherError(f"{flag} expects KEY=VALUE, got {text!r}")
    return key, value


def slot_pattern(word: str) -> re.Pattern[str]:
    """Every common spelling of the placeholder ``word``."""
    escaped = re.escape(word)
    upper = re.escape(word.upper())
    return re.compile(
        rf"\{{\{{\s*(?i:{escaped})\s*\}}\}}|\{{\s*{upper}\s*\}}|<<?\s*{upper}\s*>>?|\[\s*{upper}\s*\]"
    )


def build_rewriter(sets: dict[str, str], replaces: dict[str, str]) -> Callable[[str], tuple[str, Counter[str]]]:
    """A function from a string to (new string, replacements made by slot or literal)."""
    slots: dict[str, str] = {}
    for key, value in sets.items():  # synonyms first, so an explicit --set of a synonym wins
        for synonym in SYNONYMS.get(key, ()):
            slots.setdefault(synonym, value)
    slots.update(sets)
    patterns = [(word, slot_pattern(word), value) for word, value in slots.items()]

    def rewrite(text: str) -> tuple[str, Counter[str]]:
        counts: Counter[str] = Counter()
        for word, pattern, value in patterns:
            text, n = pattern.subn(lambda _m, v=value: v, text)
            if n:
                counts[f"{{{{{word}}}}}"] += n
        for old, new in replaces.items():
            n = text.count(old)
            if n:
                text = text.replace(old, new)
                counts[old] += n
        return text, counts

    return rewrite


def by_language(sets: dict[str, str]) -> dict[str, dict[str, str]]:
    """``--set`` values per record language: ``name_en=X`` sets ``name`` for English records."""
    per: dict[str, dict[str, str]] = {}
    for key, value in sets.items():
        base, _, lang = key.rpartition("_")
        if base and lang in LANGUAGE_SUFFIXES:
            per.setdefault(lang, {})[base] = value
    return per


def strings_of(value: Any) -> list[str]:
    """Every string value inside a record (keys aside), for telling its language."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_of(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings_of(item)]
    return []


class Rewriters:
    """The rewriter for each record: one per language when some ``--set`` key is language-specific."""

    def __init__(self, sets: dict[str, str], replaces: dict[str, str]) -> None:
        self.sets, self.replaces = sets, replaces
        self.per_language = by_language(sets)
        self.cache: dict[str, Callable[[str], tuple[str, Counter[str]]]] = {}
        self.languages: Counter[str] = Counter()

    def for_record(self, record: Any) -> Callable[[str], tuple[str, Counter[str]]]:
        from thresher.curate.text.scripts import script_language

        # Slots ({{name}}) are Latin letters in every language: judge the record by its own words.
        lang = script_language(_SLOT.sub("", " ".join(strings_of(record)))).lang if self.per_language else ""
        self.languages[lang] += 1
        if lang not in self.cache:
            self.cache[lang] = build_rewriter({**self.sets, **self.per_language.get(lang, {})}, self.replaces)
        return self.cache[lang]


def rewrite_value(value: Any, rewrite: Callable[[str], tuple[str, Counter[str]]], tally: Counter[str]) -> tuple[Any, int]:
    """``value`` with every string inside rewritten; returns (new value, strings changed)."""
    if isinstance(value, str):
        new, counts = rewrite(value)
        tally.update(counts)
        return new, int(new != value)
    if isinstance(value, dict):
        changed = 0
        out = {}
        for key, item in value.items():
            out[key], n = rewrite_value(item, rewrite, tally)
            changed += n
        return out, changed
    if isinstance(value, list):
        changed = 0
        items = []
        for item in value:
            new, n = rewrite_value(item, rewrite, tally)
            items.append(new)
            changed += n
        return items, changed
    return value, 0


def leftover_placeholders(value: Any) -> list[str]:
    """Placeholders still present anywhere in ``value``."""
    if isinstance(value, str):
        found = find_placeholder(value)
        return [found] if found else []
    if isinstance(value, dict):
        return [p for item in value.values() for p in leftover_placeholders(item)]
    if isinstance(value, list):
        return [p for item in value for p in leftover_placeholders(item)]
    return []


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=InputPath, metavar="IN", help="record file (any format thresher reads)")
    parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="OUT", help="output .jsonl or .json (optionally .gz)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fill placeholder KEY (repeatable)")
    parser.add_argument("--replace", action="append", default=[], metavar="OLD=NEW", help="replace a literal string (repeatable)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from thresher.curate.io.readers import read_rows
    from thresher.curate.io.writers import RecordWriter

    sets = dict(_pair(text, "--set") for text in args.set)
    replaces = dict(_pair(text, "--replace") for text in args.replace)
    if not sets and not replaces:
        raise ThresherError("nothing to do: give --set KEY=VALUE and/or --replace OLD=NEW")
    rewriters = Rewriters(sets, replaces)
    tally: Counter[str] = Counter()
    records = changed_records = changed_strings = 0
    left: list[str] = []
    try:
        writer = RecordWriter(args.output)
    except ValueError as exc:
        raise ThresherError(str(exc)) from None
    with writer as out:
        for row in read_rows(args.input):
            if row.data is None:
                raise InputError(row.source, row.error or "unreadable", row.line)
            new, changed = rewrite_value(row.data, rewriters.for_record(row.data), tally)
            records += 1
            changed_strings += changed
            changed_records += bool(changed)
            left += [f"{row.source}:{row.line}: {p}" for p in leftover_placeholders(new)]
            out.write(new)
        if left:
            shown = "\n  ".join(left[:LISTING_CAP])
            more = f"\n  ... and {len(left) - LISTING_CAP} more" if len(left) > LISTING_CAP else ""
            raise PlaceholdersLeft(
                f"{len(left)} placeholder(s) left unfilled, output not written; add --set for them:\n  {shown}{more}"
            )
    console = Console(stderr=True)
    table = Table(title="thresher rename", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for what, count in (("records", records), ("records changed", changed_records), ("strings changed", changed_strings)):
        table.add_row(what, str(count))
    for what, count in tally.most_common():
        table.add_row(f"  {escape(what)}", str(count))
    if rewriters.per_language:
        for lang, count in sorted(rewriters.languages.items()):
            table.add_row(f"records in {lang}", str(count))
    console.print(table)
    return 0
