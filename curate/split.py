"""``thresher split``: train/val/test files with no prompt on both sides of a split.

A prompt asked twice (identity data is full of them: "who are you", "Who
are you?") must not land in train and val at once, or validation measures
memory. Records are grouped by their normalised prompt, the user turns
(Unicode NFKC, case-folded, punctuation dropped, whitespace collapsed; a
document by its text), and each group goes to one split whole: two
conversations asking the same questions share a group even when their
answers differ. Groups are dealt in a seeded random order to the split
furthest below its target share, per stratum with ``--stratify-by``.

Two passes over the input: the first computes group keys only, the second
streams each record to its split, so memory holds keys, not records.
Records keep the shape they came in (``meta`` gains the source line unless
``--no-meta``). Records that are not valid records are removed with the
reason, so records in = train + val + test + removed.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from thresher.curate.errors import RecordError, ThresherError
from thresher.curate.io.formats import to_record
from thresher.curate.io.readers import read_rows
from thresher.curate.dedup.shingles import normalize
from thresher.curate.stage import Stage, with_meta
from thresher.curate.text.fields import texts_of
from thresher.curate.io.writers import RecordWriter
from thresher.curate.io.claims import InputPath, OutputPath

SPLITS = ("train", "val", "test")
MISSING = "(missing)"


def field_value(data: dict[str, Any], path: str) -> str:
    """The stratum of a record: the (dotted) field's value as JSON text, or ``(missing)``."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def assign(groups: dict[str, list[int]], strata: dict[str, str], fractions: dict[str, float],
           rng: random.Random) -> dict[int, str]:
    """Deal whole groups to splits: in seeded order, each to the split furthest below its target."""
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for key in groups:
        by_stratum[strata[key]].append(key)
    where: dict[int, str] = {}
    for stratum in sorted(by_stratum):
        keys = by_stratum[stratum]
        rng.shuffle(keys)
        total = sum(len(groups[k]) for k in keys)
        filled = dict.fromkeys(fractions, 0)
        for key in keys:
            split = max(fractions, key=lambda s: fractions[s] * total - filled[s])
            filled[split] += len(groups[key])
            for index in groups[key]:
                where[index] = split
    return where


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=InputPath, metavar="IN", help="record file or datasets folder")
    parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="DIR", help="folder for train/val/test files")
    parser.add_argument("--val", type=float, default=0.1, help="validation share (default 0.1)")
    parser.add_argument("--test", type=float, default=0.0, help="test share (default 0: no test file)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the group order (default 42)")
    parser.add_argument("--stratify-by", metavar="FIELD", help="keep each value of FIELD (dotted path) in proportion")
    parser.add_argument("--no-meta", action="store_true", help="write records exactly as read, without the meta key")
    parser.add_argument("--suffix", default=None,
                        help="output file type (.jsonl, .json, .parquet, .csv); default: the input's, else .jsonl")


def output_suffix(path: str, chosen: str | None) -> str:
    if chosen:
        return chosen if chosen.startswith(".") else f".{chosen}"
    name = Path(path).name.lower().removesuffix(".gz")
    return next((s for s in RecordWriter.SUFFIXES if name.endswith(s)), ".jsonl")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    fractions = {"train": 1 - args.val - args.test, "val": args.val, "test": args.test}
    if args.val < 0 or args.test < 0 or fractions["train"] <= 0:
        raise ThresherError("--val and --test must be >= 0 and leave a share for train")
    if not args.test:
        del fractions["test"]
    out = Path(args.output)
    suffix = output_suffix(args.path, args.suffix)

    with Stage("split", out / "removed.jsonl", out / "split.stats.json") as stage:
        # pass 1: group keys and strata
        groups: dict[str, list[int]] = defaultdict(list)
        strata: dict[str, str] = {}
        for index, row in enumerate(read_rows(args.path)):
            stage.seen()
            if row.data is None:
                stage.remove(row, "unreadable", error=row.error)
                continue
            try:
                texts = texts_of(to_record(row.data, context={"allow_placeholders": True}))
                key = normalize(texts.text or texts.prompt)
            except RecordError as exc:
                stage.remove(row, "invalid", field=exc.field, error=exc.reason)
                continue
            groups[key].append(index)
            strata.setdefault(key, field_value(row.data, args.stratify_by) if args.stratify_by else "")
        where = assign(groups, strata, fractions, random.Random(args.seed))

        # pass 2: stream each record to its split
        writers = {s: RecordWriter(out / f"{s}{suffix}") for s in fractions}
        for writer in writers.values():
            writer.__enter__()
        try:
            for index, row in enumerate(read_rows(args.path)):
                split = where.get(index)
                if split is None:
                    continue
                data = row.data if args.no_meta else with_meta(row.data, source=row.source, line=row.line)
                writers[split].write(data)
                stage.keep()
        except BaseException as exc:
            for writer in writers.values():
                writer.__exit__(type(exc), exc, exc.__traceback__)
            raise
        for writer in writers.values():
            writer.__exit__(None, None, None)
        shared = [g for g in groups.values() if len(g) > 1]
        stage.extra.update(
            splits={s: w.count for s, w in writers.items()},
            groups=len(groups),
            groups_kept_together=len(shared),
            records_in_shared_groups=sum(len(g) for g in shared),
        )

    stats = stage.stats()
    table = Table(title=f"thresher split -> {out}")
    for column in ("split", "records", "share"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, count in stats["splits"].items():
        table.add_row(f"{split}{suffix}", str(count), f"{count / max(stats['kept'], 1):.1%}")
    console = Console()
    console.print(table)
    console.print(
        f"split: {stats['in']} records in, {stats['kept']} written, {stats['removed_total']} removed; "
        f"{stats['groups_kept_together']} groups of repeated prompts kept together "
        f"({stats['records_in_shared_groups']} records)", highlight=False, soft_wrap=True)
    return 0
