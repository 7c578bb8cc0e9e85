"""``thresher score``: add a trained reward model's score to each record's ``meta``.

``Dialogue`` and ``QA`` records get ``meta.reward`` (their final assistant
reply), ``Preference`` records ``meta.reward_chosen`` / ``meta.reward_rejected``,
``Scored`` records ``meta.rewards`` (one per response, in order). Kept
records keep the shape they came in; rows that cannot be scored go to
``SCORED.removed.jsonl`` with a reason (records in == scored + removed).
Records are scored in chunks, so a large file never sits in memory whole.
"""

from __future__ import annotations

import argparse
from thresher.curate.io.claims import InputPath, OutputPath
from typing import Any

CHUNK = 1024


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="+", type=InputPath, metavar="IN", help="record files to score")
    parser.add_argument("--model", required=True, type=InputPath, metavar="OUT", help="a 'thresher train rm' output folder")
    parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="SCORED", help="scored records (.jsonl/.json, +.gz)")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per forward pass (default 16)")


def _items(record: Any) -> tuple[list[tuple[Any, str]], Any]:
    """The (prompt, reply) items of a record and how to put their scores into its meta."""
    from thresher.schemas import Preference, Scored
    from thresher.train.rm import reply_of

    if isinstance(record, Preference):
        items = [(record.prompt, record.chosen.content), (record.prompt, record.rejected.content)]
        return items, lambda s: {"reward_chosen": s[0], "reward_rejected": s[1]}
    if isinstance(record, Scored):
        return [(record.prompt, r.response) for r in record.responses], lambda s: {"rewards": s}
    return [reply_of(record)], lambda s: {"reward": s[0]}


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from thresher.curate.stage import Stage, default_sidecar, with_meta
    from thresher.curate.io.writers import RecordWriter
    from thresher.train.rm import RewardScorer

    scorer = RewardScorer(args.model)
    removed, stats = default_sidecar(args.output, "removed"), default_sidecar(args.output, "stats")
    with Stage("score", removed, stats) as stage, RecordWriter(args.output) as writer:
        pending: list[tuple[dict[str, Any], list[tuple[Any, str]], Any]] = []

        def flush() -> None:
            scores = iter(scorer.score([item for _, items, _ in pending for item in items], args.batch_size))
            for data, items, place in pending:
                writer.write(with_meta(data, **place([next(scores) for _ in items])))
                stage.keep()
            pending.clear()

        for record, row in stage.records(args.input):
            try:
                items, place = _items(record)
            except ValueError as exc:
                stage.remove(row, "not_scorable", error=str(exc))
                continue
            pending.append((row.data, items, place))
            if len(pending) >= CHUNK:
                flush()
        if pending:
            flush()
    Console().print(f"scored {stage.kept} of {stage.records_in} records -> {args.output}"
                    + (f" ({stage.records_in - stage.kept} removed: {removed})" if stage.kept < stage.records_in else ""))
    return 0
