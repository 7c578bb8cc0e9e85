"""``thresher train``: training commands (``sft`` here; reward model and DPO join as siblings).

No torch at import time: ``thresher train --help`` stays fast.
"""

from __future__ import annotations

import argparse

from .config import add_training_flags, resolve


def configure(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="train_command", metavar="SUBCOMMAND", required=True)
    sft = commands.add_parser(
        "sft", help="supervised fine-tuning (full, LoRA, QLoRA) on dialogue records",
        description="Supervised fine-tuning on dialogue records: loss on assistant turns only, "
        "rendered with the model's chat template (ChatML when it has none).",
    )
    add_training_flags(sft)


def run(args: argparse.Namespace) -> int:
    from .config import TrainConfig

    config = resolve(TrainConfig, args)
    if args.train_command == "sft":
        from .sft import run_sft

        run_sft(config)
    return 0
