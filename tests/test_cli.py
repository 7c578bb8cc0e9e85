"""The console script: help and version stay light, every subcommand has help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from thresher.curate.cli import COMMANDS

HEAVY = ("torch", "transformers", "datasets", "peft", "accelerate", "openai", "datasketch", "fasttext")


def imported_modules(*argv: str) -> set[str]:
    """Top-level modules imported while running the CLI with ``argv`` (via -X importtime)."""
    code = f"import sys; from thresher.curate.cli import main; sys.exit(main({list(argv)!r}))"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("argv", [("--help",), ("--version",)] + [(name, "--help") for name in COMMANDS])
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
