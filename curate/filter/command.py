"""``thresher filter``: keep or drop records by heuristic rules, identity hygiene and learned scores.

A keep-or-drop stage (see ``stage.py``): kept records are written in the shape
they came in, with their scores under ``meta.filter``; every removed record
goes to the removed file with the first rule it failed and the measured value
(``detail``), and the stats JSON counts removals by rule. ``--score-only``
removes nothing (except lines that are not JSON objects) and writes every
record with its scores and the rules it *would* fail, for inspection.

Checks run in this order, and a removal names the first failure:
the data contract (``invalid``), the heuristic rules in their YAML order,
identity claims (``identity``), language (``language``), the fastText quality
model (``quality``), perplexity (``perplexity``) and the reward model (``reward``). Model scores are computed
in batches of ``--batch-size`` records.

The input is cut into pieces (``thresher.curate.io.shards``) judged by
``--workers`` processes or, with ``--engine ray``, by a Ray cluster; the
judging lives in ``pipeline.py`` and is the same everywhere, so the output
does not depend on where it ran. ``-o OUT/`` writes one part per piece.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from thresher.curate.engines import add_arguments as add_engine_arguments
from thresher.curate.io.claims import InputPath, OutputPath
from thresher.curate.errors import ThresherError
from thresher.curate.io.formats import FORMATS


def percentile_threshold(values: list[float], percentile: float) -> float:
    """The value below which ``percentile`` percent of ``values`` fall (linear interpolation)."""
    import numpy as np

    if not values:
        raise ThresherError("--ppl-percentile: no record has text to score")
    return float(np.percentile(values, percentile))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=InputPath, metavar="IN", help="record files, folders of them, globs, datasets folders")
    parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="OUT",
                        help="kept records (.jsonl or .json, +.gz), or a folder OUT/ for one part per piece")
    parser.add_argument("--rules", type=InputPath, metavar="FILE.yaml", help="rule settings merged over the shipped defaults")
    parser.add_argument("--removed", type=OutputPath, metavar="FILE", help="removed records with reason and measured value "
                        "(default: OUT.removed.jsonl; a folder for OUT/)")
    parser.add_argument("--stats", type=OutputPath, metavar="FILE", help="stats JSON (default: OUT.stats.json)")
    parser.add_argument("--from", dest="fmt", choices=FORMATS, help="force the record format instead of detecting it")
    parser.add_argument("--score-only", action="store_true", help="remove nothing; write every record with its scores")
    parser.add_argument("--no-meta", action="store_true", help="write kept records exactly as read, without scores")
    parser.add_argument("--batch-size", type=int, default=256, help="records per scoring batch (default 256)")
    add_engine_arguments(parser, "processes judging pieces of the input")
    identity = parser.add_argument_group("identity hygiene")
    identity.add_argument("--identity-name", metavar="NAME", help="the name being taught; turns on identity hygiene")
    identity.add_argument("--identity-author", metavar="AUTHOR", help="who made the model being taught")
    lang = parser.add_argument_group("language")
    lang.add_argument("--languages", metavar="LANGS", help="comma-separated languages to keep, e.g. zh,en "
                      "(default: keep all, score only)")
    lang.add_argument("--lid-model", type=InputPath, metavar="PATH", help="fastText language-ID model (e.g. lid.176.ftz) "
                      "instead of Unicode script ratios")
    lang.add_argument("--min-lang-confidence", type=float, default=0.5,
                      help="with --languages: minimum confidence (default 0.5)")
    models = parser.add_argument_group("learned scores")
    models.add_argument("--quality-model", type=InputPath, metavar="MODEL.bin", help="fastText model from `thresher quality train`")
    models.add_argument("--min-quality", type=float, help="remove records whose P(good) is below this")
    models.add_argument("--ppl-model", type=InputPath, metavar="PATH", help="local transformers causal LM folder for perplexity")
    ppl = models.add_mutually_exclusive_group()
    ppl.add_argument("--max-ppl", type=float, help="remove records whose perplexity is above this")
    ppl.add_argument("--ppl-percentile", type=float, metavar="P",
                     help="remove records above the P-th perplexity percentile (e.g. 95 drops the top 5%%)")
    models.add_argument("--ppl-batch-size", type=int, default=8, help="texts per perplexity batch (default 8)")
    models.add_argument("--ppl-max-length", type=int, default=1024, help="tokens scored per text (default 1024)")
    models.add_argument("--device", default="auto", help="device for --ppl-model: auto, cpu, cuda, cuda:1 ...")
    models.add_argument("--rm-model", type=InputPath, metavar="PATH", help="reward model from `thresher train rm`: scores each "
                        "dialogue's final answer (meta.filter.scores.reward)")
    models.add_argument("--min-reward", type=float, help="with --rm-model: remove records whose reward is below this")


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The settings worth recording in the stats."""
    settings: dict[str, Any] = {"rules": args.rules or "defaults", "score_only": args.score_only}
    if args.identity_name:
        settings["identity"] = {"name": args.identity_name, "author": args.identity_author}
    if args.languages:
        settings["languages"] = sorted({lang.strip() for lang in args.languages.split(",") if lang.strip()})
    if args.rm_model:
        settings["reward"] = {"model": args.rm_model, "min": args.min_reward}
    return settings


def filter_paths(args: argparse.Namespace) -> dict[str, Any]:
    """Filter ``args.paths`` into ``args.output`` on the engine ``args`` names; returns the stats."""
    from thresher.curate.engines import engine_from
    from thresher.curate.filter.pipeline import STAGE, FilterJob, PerplexityJob, check_options
    from thresher.curate.io.shards import expand_inputs, plan
    from thresher.curate.stage import run_pieces

    check_options(args)
    pieces = plan(expand_inputs(args.paths))
    engine = engine_from(args)
    settings = settings_of(args)
    job = FilterJob(args)
    if args.ppl_percentile is not None:
        job.ppl = list(engine.map(PerplexityJob(args), pieces))
        job.max_ppl = percentile_threshold([v for values in job.ppl for v in values if v is not None],
                                           args.ppl_percentile)
        settings["ppl_threshold"] = {"percentile": args.ppl_percentile, "max_ppl": round(job.max_ppl, 4)}

    def finish(stage: Any) -> None:
        stage.extra["identity_claims"] = dict(stage.extra.pop("identity_claims", Counter()).most_common())

    stage = run_pieces(STAGE, engine, job, pieces, args.output, args.removed, args.stats, settings, finish)
    return stage.stats()


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    print_summary(filter_paths(args), Console())
    return 0


def print_summary(stats: dict[str, Any], console: Any) -> None:
    """Counts, removals by rule and identity claims by competitor, as rich tables."""
    from rich.table import Table

    table = Table(title="thresher filter")
    for column in ("in", "kept", "removed"):
        table.add_column(column, justify="right")
    table.add_row(str(stats["in"]), str(stats["kept"]), str(stats["removed_total"]))
    console.print(table)
    if stats["removed"]:
        reasons = Table(title="removed by rule")
        reasons.add_column("rule")
        reasons.add_column("records", justify="right")
        for reason, count in sorted(stats["removed"].items(), key=lambda item: -item[1]):
            reasons.add_row(reason, str(count))
        console.print(reasons)
    if stats.get("identity_claims"):
        claims = Table(title="identity claims by competitor")
        claims.add_column("competitor")
        claims.add_column("records", justify="right")
        for name, count in stats["identity_claims"].items():
            claims.add_row(name, str(count))
        console.print(claims)
