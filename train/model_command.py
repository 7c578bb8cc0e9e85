"""``thresher model``: get a model to train: import a GGUF file, or build a tiny random one."""

from __future__ import annotations

import argparse

from thresher.train.subcommands import Table, configure_subcommands, run_subcommand

SUBCOMMANDS: Table = {
    "import": ("thresher.train.gguf_import",
               "turn a GGUF file (default: the shipped SmolLM2-135M-Instruct) into a Hugging Face model folder"),
    "tiny": ("thresher.train.tiny", "build a tiny random causal LM and tokenizer for smoke tests"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    configure_subcommands(parser, SUBCOMMANDS)


def run(args: argparse.Namespace) -> int:
    return run_subcommand(args)
