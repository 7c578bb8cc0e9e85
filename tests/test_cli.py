"""The console script: help and version stay light, every subcommand has help."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from thresher.cli.main import COMMANDS, build_parser

HEAVY = ("torch", "transformers", "datasets", "peft", "accelerate", "openai", "datasketch", "fasttext", "scipy")


def every_help_argv() -> list[tuple[str, ...]]:
    """``--help`` of the root, of every command and of every nested subcommand (``train sft``...)."""
    argvs: list[tuple[str, ...]] = [("--help",), ("--version",)]
    for name in COMMANDS:
        argvs.append((name, "--help"))
        command = build_parser(name)._subparsers._group_actions[0].choices[name]
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                argvs += [(name, sub, "--help") for sub in action.choices]
    return argvs


def imported_modules(*argv: str) -> set[str]:
    """Top-level modules imported while running the CLI with ``argv`` (via -X importtime)."""
    code = f"import sys; from thresher.cli.main import main; sys.exit(main({list(argv)!r}))"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("argv", every_help_argv(), ids=" ".join)
def test_help_and_version_import_no_heavy_library(argv):
    heavy = imported_modules(*argv) & set(HEAVY)
    assert not heavy, f"thresher {' '.join(argv)} imported {heavy}"


def test_help_lists_every_command_and_version_prints(thresher):
    result = thresher("--help")
    assert result.returncode == 0
    assert all(name in result.stdout for name in COMMANDS)
    assert thresher("--version").stdout.startswith("thresher ")


def test_no_command_prints_usage_and_exits_2(thresher):
    result = thresher()
    assert result.returncode == 2 and "COMMAND" in result.stdout
