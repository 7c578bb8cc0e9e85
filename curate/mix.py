"""``thresher mix``: combine sources at sampling rates or target ratios, shuffled with a seed.

Identity tuning needs a little identity data among much general data (1:5
is the usual guard against the model forgetting everything else), so mix
takes either a RATE per source (``PATH:RATE``; below 1 samples without
replacement, above 1 repeats the source floor(RATE) times plus a sample of
the fraction) or ``--ratio`` between sources. Sample sizes are exact
(``round(fraction * n)``), not coin flips, so a rate of 0.5 on 1000 records
gives 500. Everything random draws from one ``random.Random(seed)`` in a
fixed order, so the same seed gives the same output byte for byte.

Records keep the shape they came in; ``meta`` records the source file and
line (``--no-meta`` writes them unchanged). Records not sampled go to the
removed file with reason ``not_sampled``, so records in = kept + removed;
repeats are counted in ``written``.
"""

from __future__ import annotations

import argparse
import math
import random
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from thresher.curate.errors import ThresherError
from thresher.curate.io.claims import InputPath, OutputPath
from thresher.curate.io.readers import Row, read_rows
from thresher.curate.stage import Stage, default_sidecar, with_meta
from thresher.curate.io.writers import RecordWriter

MIN_RATE, MAX_RATE = 0.01, 10.0


@dataclass
class Source:
    """One SPEC: the file, its rate (None under --ratio) and its rows as read."""

    path: str
    rate: float | None
    rows: list[Row]

    @cached_property
    def valid(self) -> list[int]:
        """Indices of the rows that are records (unparsable lines cannot be mixed)."""
        return [i for i, row in enumerate(self.rows) if row.data is not None]


def _split_spec(spec: str) -> tuple[str, str | None]:
    """``PATH[:RATE]`` -> (PATH, RATE as written); the rate is whatever follows the last colon, if a number."""
    match = re.fullmatch(r"(.+):([0-9]*\.?[0-9]+)", spec)
    if not match or Path(spec).exists():
        return spec, None
    return match.group(1), match.group(2)


def spec_path(spec: str) -> InputPath:
    """The argument type of a SPEC: the spec as given, declaring its file as an input."""
    return InputPath(spec, _split_spec(spec)[0])


def parse_spec(spec: str) -> tuple[str, float | None]:
    """``PATH[:RATE]`` with the rate checked."""
    path, written = _split_spec(spec)
    if written is None:
        return path, None
    rate = float(written)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ThresherError(f"{spec}: rate must be between {MIN_RATE} and {MAX_RATE:g}")
    return path, rate


def parse_ratio(text: str, sources: int) -> list[float]:
    """``1:5`` -> [1.0, 5.0]; one positive weight per source."""
    try:
        weights = [float(part) for part in text.split(":")]
    except ValueError:
        raise ThresherError(f"--ratio {text!r}: expected numbers joined by ':', e.g. 1:5") from None
    if len(weights) != sources or any(w <= 0 for w in weights):
        raise ThresherError(f"--ratio {text!r}: needs {sources} positive weights, one per source")
    return weights


def copies_by_rate(count: int, rate: float, rng: random.Random) -> list[int]:
    """How often each of ``count`` records is written at ``rate``."""
    whole, fraction = int(math.floor(rate)), rate - math.floor(rate)
    copies = [whole] * count
    for index in rng.sample(range(count), round(fraction * count)):
        copies[index] += 1
    return copies


def ratio_counts(counts: list[int], weights: list[float]) -> list[int]:
    """The largest sample sizes in proportion ``weights`` that no source has to repeat for."""
    scale = min(n / w for n, w in zip(counts, weights))
    return [min(n, math.floor(scale * w + 1e-9)) for n, w in zip(counts, weights)]


def plan(sources: list[Source], weights: list[float] | None, rng: random.Random) -> list[list[int]]:
    """Copies per valid record of each source."""
    sizes = [len(s.valid) for s in sources]
    if weights is None:
        return [copies_by_rate(n, s.rate if s.rate is not None else 1.0, rng) for n, s in zip(sizes, sources)]
    plans = []
    for n, k in zip(sizes, ratio_counts(sizes, weights)):
        copies = [0] * n
        for index in rng.sample(range(n), k):
            copies[index] = 1
        plans.append(copies)
    return plans


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", type=spec_path, metavar="PATH[:RATE]",
                        help="sources; RATE in [0.01, 10]: <1 samples, >1 repeats (default 1)")
    parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="OUT", help="output file (.jsonl/.json/.parquet/.csv)")
    parser.add_argument("--seed", type=int, default=42, help="sampling and shuffling seed (default 42)")
    parser.add_argument("--ratio", metavar="A:B[:...]",
                        help="target proportion between sources, e.g. 1:5; samples each down to fit (no RATE then)")
    parser.add_argument("--no-meta", action="store_true", help="write records exactly as read, without the meta key")
    parser.add_argument("--removed", type=OutputPath, metavar="FILE", help="records not sampled (default: beside OUT)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    specs = [parse_spec(spec) for spec in args.specs]
    if args.ratio and any(rate is not None for _, rate in specs):
        raise ThresherError("give either RATEs or --ratio, not both")
    weights = parse_ratio(args.ratio, len(specs)) if args.ratio else None
    sources = [Source(path, rate, list(read_rows(path))) for path, rate in specs]
    rng = random.Random(args.seed)
    plans = plan(sources, weights, rng)
    order = [(s, i) for s, copies in enumerate(plans) for i, n in enumerate(copies) for _ in range(n)]
    rng.shuffle(order)

    out = Path(args.output)
    removed = Path(args.removed) if args.removed else default_sidecar(out, "removed")
    try:
        writer = RecordWriter(out)
    except ValueError as exc:
        raise ThresherError(str(exc)) from None
    written = [0] * len(sources)
    with Stage("mix", removed, default_sidecar(out, "stats")) as stage, writer:
        for source, copies in zip(sources, plans):
            stage.seen(len(source.rows))
            for row in source.rows:
                if row.data is None:
                    stage.remove(row, "unreadable", error=row.error)
            for index, n in zip(source.valid, copies):
                if n:
                    stage.keep()
                else:
                    stage.remove(source.rows[index], "not_sampled")
        for s, i in order:
            row = sources[s].rows[sources[s].valid[i]]
            data = row.data if args.no_meta else with_meta(row.data, source=row.source, line=row.line)
            writer.write(data)
            written[s] += 1
        stage.extra["written"] = writer.count
        stage.extra["sources"] = {s.path: n for s, n in zip(sources, written)}

    table = Table(title=f"thresher mix -> {out}")
    for column in ("source", "records", "rate", "written", "share"):
        table.add_column(column, justify="left" if column == "source" else "right", overflow="fold")
    total = max(writer.count, 1)
    for source, n, copies in zip(sources, written, plans):
        rate = f"{source.rate:g}" if source.rate is not None else (f"{n / len(copies):.3f}" if copies else "-")
        table.add_row(source.path, str(len(source.rows)), rate, str(n), f"{n / total:.1%}")
    Console().print(table)
    stats = stage.stats()
    Console().print(f"mix: {stats['in']} records in, {stats['kept']} kept ({writer.count} written with repeats), "
                    f"{stats['removed_total']} removed {dict(stats['removed'])}", highlight=False, soft_wrap=True)
    return 0
