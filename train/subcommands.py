"""Commands made of subcommands (``thresher model tiny|import``, ``thresher eval identity|general``).

Each subcommand's ``configure(parser)`` and ``run(args)`` live beside its
code; a command module only lists them, the way ``cli/main.py`` lists
commands. Subcommand modules import nothing heavy at module level, so
``--help`` stays free of torch.
"""

from __future__ import annotations

import argparse
import importlib

#: subcommand -> (module that implements it, one-line help)
Table = dict[str, tuple[str, str]]


def configure_subcommands(parser: argparse.ArgumentParser, table: Table) -> None:
    """One subparser per entry of ``table``, configured by its own module."""
    commands = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    for name, (module, help_text) in table.items():
        sub = commands.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        importlib.import_module(module).configure(sub)
        sub.set_defaults(_subcommand_module=module)


def run_subcommand(args: argparse.Namespace) -> int:
    """Run the chosen subcommand's module."""
    return importlib.import_module(args._subcommand_module).run(args)
