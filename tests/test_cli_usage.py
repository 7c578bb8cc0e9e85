"""The CLI a new user meets: help on every option, unknown flags answered by their subcommand, unwrapped logs."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from thresher.cli.main import COMMANDS, build_parser


def every_parser() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command's parser and every nested subcommand's (``train sft``, ``eval identity`` ...)."""
    found = []

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        found.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(f"{name} {sub_name}", sub)

    for name in COMMANDS:
        walk(name, build_parser(name)._subparsers._group_actions[0].choices[name])
    return found


def test_every_option_of_every_command_has_help_text():
    missing = [
        f"thresher {name}: {'/'.join(action.option_strings) or action.dest}"
        for name, parser in every_parser()
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        and not (action.help and action.help.strip())
    ]
    assert len(every_parser()) > len(COMMANDS)  # the nested subcommands were walked too
    assert not missing, "options without help text:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    ("argv", "usage", "hint"),
    [
        (["convert", "in.jsonl", "-o", "out.jsonl", "--to", "qa", "--frm", "alpaca"], "usage: thresher convert",
         "did you mean --from?"),
        (["train", "sft", "--modle", "m"], "usage: thresher train sft", "did you mean --model?"),
        (["eval", "identity", "--model", "m", "--name", "n", "--author", "a", "--name_en", "x"],
         "usage: thresher eval identity", "did you mean --name-en?"),
    ],
)
def test_unknown_flag_prints_the_subcommands_usage_and_the_closest_flag(thresher, argv, usage, hint):
    result = thresher(*argv)
    assert result.returncode == 2
    assert usage in result.stderr and hint in result.stderr
    assert "unrecognized arguments" in result.stderr
    assert "usage: thresher [-h]" not in result.stderr  # not the top-level usage


def test_output_piped_to_a_log_does_not_wrap_long_paths(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "records-with-a-long-name.jsonl"
    deep.parent.mkdir(parents=True)
    deep.write_text('{"instruction": "q", "output": "a"}\n', encoding="utf-8")
    out = deep.with_name("out-with-an-equally-long-name.jsonl")
    exe = str(Path(sys.executable).with_name("thresher"))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # as in a cron job or CI log
    for argv in (["convert", str(deep), "-o", str(out), "--to", "messages"], ["validate", str(out)]):
        result = subprocess.run([exe, *argv], capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout  # one piece, on one line
