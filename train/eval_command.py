"""``thresher eval``: measure a model (a folder, an adapter, or a served model) on held-out prompts."""

from __future__ import annotations

import argparse

from thresher.train.subcommands import Table, configure_subcommands, run_subcommand

SUBCOMMANDS: Table = {
    "identity": ("thresher.train.eval_identity",
                 "identity pass rate and parrot rate on held-out prompts (--general: NLL and drift too)"),
    "general": ("thresher.train.eval_general",
                "how much general ability survived: reference NLL and drift on a held-out general set"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    configure_subcommands(parser, SUBCOMMANDS)


def run(args: argparse.Namespace) -> int:
    return run_subcommand(args)
