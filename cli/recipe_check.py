"""What ``thresher run`` checks before any stage runs, and where recipes and their paths are found.

A recipe is a list of CLI stages, and a typo in stage 5 used to surface after
stage 1 had spent an hour (or money) on synthesis. ``check_keys`` (the YAML as
written) and ``check_stages`` (after ``${var}`` substitution) look at the whole
recipe first: unknown keys, unknown commands, ``@stage`` references to no
earlier stage, and every option name (and choice value) against the parser of
the command it is given to. Every problem names the stage, the key and the
closest valid name, and all of them are reported at once.

Paths: ``thresher run NAME`` finds a shipped recipe by name (``--list`` shows
them); a ``--set`` value naming an existing file or folder is taken relative to
the current directory, as on any command line, not to the recipe's folder.
"""

from __future__ import annotations

import argparse
from difflib import get_close_matches
from importlib.resources import files
from pathlib import Path
from typing import Any

from thresher.curate.errors import ThresherError


def shipped_recipes() -> dict[str, Path]:
    """The recipes that ship with thresher, by name (file stem)."""
    folder = Path(str(files("thresher.examples")))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def find_recipe(name: str) -> Path:
    """A recipe file, or a shipped recipe named ``name`` (with or without ``.yaml``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_recipes()
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    if len(path.parts) == 1 and stem in shipped:
        return shipped[stem]
    hint = _closest(stem, list(shipped))
    raise ThresherError(f"{name}: no such recipe file or shipped recipe{hint} "
                        f"(shipped: {', '.join(shipped)}; thresher run --list)")


def print_recipes() -> None:
    """``thresher run --list``: each shipped recipe's name, description and real path."""
    import yaml

    for name, path in shipped_recipes().items():
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        print(f"{name:16} {raw.get('description') or ''}\n{'':16} {path}")


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set VAR=VALUE`` as YAML values (``false``, ``0.5``, ``null``); a value naming an existing
    file or folder becomes absolute, so it means what it means on any command line: relative to here."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ThresherError(f"--set {item}: use VAR=VALUE")
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError:  # text YAML cannot read (``@stage``, which YAML reserves) stays the text it is
            value = text
        if isinstance(value, str) and value and Path(value).expanduser().exists():
            value = str(Path(value).expanduser().resolve())
        overrides[key] = value
    return overrides


def _closest(name: str, choices: list[str], prefix: str = "") -> str:
    found = get_close_matches(name, choices, n=1, cutoff=0.5)
    return f"; did you mean {prefix}{found[0]}?" if found else ""


def _where(index: int, stage: dict[str, Any] | Any) -> str:
    name = stage.get("name") if isinstance(stage, dict) else getattr(stage, "name", None)
    return f"stage {index} ({name})" if name else f"stage {index}"


def check_keys(raw: dict[str, Any], path: Path) -> None:
    """Unknown top-level and stage keys, each with the closest valid key, before anything else."""
    from thresher.cli.recipe import Recipe, StageSpec

    problems = [f"key '{key}' is not a recipe key{_closest(str(key), list(Recipe.model_fields))}"
                for key in raw if key not in Recipe.model_fields]
    for index, stage in enumerate(raw.get("stages") or [], 1):
        if isinstance(stage, dict):
            problems += [f"{_where(index, stage)}: key '{key}' is not a stage key"
                         f"{_closest(str(key), list(StageSpec.model_fields))}"
                         for key in stage if key not in StageSpec.model_fields]
    _raise(problems, path)


def command_parser(command: str) -> argparse.ArgumentParser:
    """The parser of a thresher command (``train sft``); ``ThresherError`` naming the closest command."""
    from thresher.cli.main import COMMANDS, build_parser

    words = command.split()
    if not words or words[0] not in COMMANDS:
        first = words[0] if words else ""
        raise ThresherError(f"command '{command}' is not a thresher command{_closest(first, list(COMMANDS))}")
    parser = build_parser(words[0])._subparsers._group_actions[0].choices[words[0]]
    for word in words[1:]:
        subcommands = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if subcommands is None or word not in subcommands.choices:
            choices = list(subcommands.choices) if subcommands else []
            raise ThresherError(f"command '{command}': '{word}' is not a subcommand{_closest(word, choices)}")
        parser = subcommands.choices[word]
    if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        raise ThresherError(f"command '{command}' needs a subcommand")
    return parser


def check_stages(stages: list[Any], path: Path) -> None:
    """Commands, ``@stage`` references and option names of every stage, all reported together."""
    from thresher.cli.recipe import _REFERENCE

    problems: list[str] = []
    with_output: list[str] = []
    for index, stage in enumerate(stages, 1):
        where = _where(index, stage)
        try:
            parser = command_parser(stage.command)
        except ThresherError as exc:
            problems.append(f"{where}: {exc}")
            parser = None
        for key, value in [("inputs", v) for v in stage.inputs] + [(k, v) for k, v in stage.options.items()]:
            for item in value if isinstance(value, list) else [value]:
                reference = _REFERENCE.fullmatch(item) if isinstance(item, str) else None
                if reference and reference.group(1) not in with_output:
                    problems.append(f"{where}: {key}: @{reference.group(1)} names no earlier stage with an output"
                                    f"{_closest(reference.group(1), with_output, '@')}")
        if parser is not None:
            problems += option_problems(where, stage, parser)
        if stage.output is not None:
            with_output.append(stage.name)
    _raise(problems, path)


def option_problems(where: str, stage: Any, parser: argparse.ArgumentParser) -> list[str]:
    """Each option key of ``stage`` that ``parser`` has no flag for (or whose value is not a choice)."""
    flags = parser._option_string_actions
    names = sorted({f.lstrip("-").replace("-", "_") for f in flags if f not in ("-h", "--help")})
    problems = []
    for key, value in stage.options.items():
        flag = ("-" if len(key) == 1 else "--") + key.replace("_", "-")
        action = flags.get(flag)
        if action is None:
            problems.append(f"{where}: option '{key}' is not an option of 'thresher {stage.command}'"
                            f"{_closest(key.replace('-', '_'), names)}")
        elif action.choices and value not in (None, False, True) and not str(value).startswith("@") \
                and str(value) not in map(str, action.choices):
            problems.append(f"{where}: option '{key}': {value!r} is not one of {', '.join(map(str, action.choices))}"
                            f"{_closest(str(value), list(map(str, action.choices)))}")
    if stage.output is not None and stage.output_flag not in flags:
        problems.append(f"{where}: output_flag '{stage.output_flag}' is not an option of 'thresher {stage.command}'")
    if stage.inputs and not any(not a.option_strings for a in parser._actions):
        problems.append(f"{where}: 'thresher {stage.command}' takes no inputs; name its files with an option")
    return problems


def _raise(problems: list[str], path: Path) -> None:
    if problems:
        count = f"{len(problems)} problems" if len(problems) > 1 else "a problem"
        raise ThresherError(f"{path}: {count}, nothing was run:\n  " + "\n  ".join(problems))
