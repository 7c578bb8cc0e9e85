"""The ``thresher`` command line: one root, subcommands loaded on demand.

Each subcommand lives in its own module exposing ``configure(parser)`` and
``run(args) -> int``. Only the module of the command being run is imported,
so ``thresher --help`` never pays for torch, transformers or datasets.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from difflib import get_close_matches
from importlib.metadata import PackageNotFoundError, version

#: command -> (module that implements it, one-line help). Order is the help's order.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("thresher.cli.demo", "the whole self-cognition job offline on a real model (SmolLM2) or a tiny one (the quick start)"),
    "synth": ("thresher.curate.synth.command", "synthesize identity, answer, paraphrase and preference data via any OpenAI-compatible API"),
    "rename": ("thresher.curate.rename", "fill {{name}}-style placeholders and replace names in every string of every record"),
    "validate": ("thresher.curate.validate", "check record files against the data contract"),
    "convert": ("thresher.curate.convert", "convert records between formats (alpaca, sharegpt, messages, llamafactory, ...)"),
    "dedup": ("thresher.curate.dedup.command", "remove exact and near-duplicate records (MinHash LSH, Chinese-aware)"),
    "filter": ("thresher.curate.filter.command", "keep or drop records by quality rules, identity hygiene and model scores"),
    "quality": ("thresher.curate.filter.quality", "train a fastText quality classifier for `thresher filter`"),
    "mix": ("thresher.curate.mix", "mix sources at sampling rates or ratios, shuffled with a seed"),
    "split": ("thresher.curate.split", "split into train/val/test without near-identical prompts straddling splits"),
    "stats": ("thresher.curate.stats", "dataset statistics: kinds, turns, lengths, languages, duplicates"),
    "schema": ("thresher.curate.schema_export", "export the JSON Schema of every record kind"),
    "train": ("thresher.train.cli", "train a model: sft (full, LoRA, QLoRA), rm (reward model), dpo, ppo, grpo"),
    "generate": ("thresher.train.replay", "answer records' prompts with a local model: replay data in its own words"),
    "score": ("thresher.train.score", "add a trained reward model's score to each record's meta"),
    "export": ("thresher.train.export", "export a trained model: merge a LoRA adapter into its base"),
    "chat": ("thresher.train.chat", "chat with a model or adapter in the terminal (streaming)"),
    "model": ("thresher.train.model_command", "get a model: import a GGUF file (the shipped SmolLM2), or build a tiny one"),
    "eval": ("thresher.train.eval_command", "evaluate a model: identity (pass and parrot rates), general ability (NLL, drift)"),
    "run": ("thresher.cli.recipe", "run a recipe: every stage of a job in order, resumable"),
}


def _version() -> str:
    try:
        return version("thresher")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The root parser; only ``command``'s own arguments are configured."""
    parser = argparse.ArgumentParser(
        prog="thresher",
        description="Synthesize, clean and convert LLM training data, then train on it.",
    )
    parser.add_argument("--version", action="version", version=f"thresher {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        if name == command:
            importlib.import_module(module).configure(sub)
            sub.set_defaults(_module=module)
    return parser


def _command_in(argv: list[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost parser the command line chose (``thresher train sft`` -> the ``sft`` parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None)
            if name in action.choices:
                return chosen_parser(action.choices[name], args)
    return parser


def closest_flag(parser: argparse.ArgumentParser, flag: str) -> str | None:
    """The option of ``parser`` nearest to a mistyped ``flag`` (``--frm`` -> ``--from``)."""
    if not flag.startswith("-"):
        return None
    options = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    found = get_close_matches(flag.split("=", 1)[0], options, n=1, cutoff=0.6)
    return found[0] if found else None


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; an unknown argument is reported by the subcommand it was given to, with the
    nearest flag, instead of by the root parser with the top-level usage."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        owner = chosen_parser(parser, args)
        hint = closest_flag(owner, unknown[0])
        owner.error(f"unrecognized arguments: {' '.join(unknown)}" + (f" (did you mean {hint}?)" if hint else ""))
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``thresher`` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        return _main(argv)
    # rich wraps at 80 columns when it cannot ask a terminal, breaking paths in logs in half.
    os.environ["COLUMNS"] = "4000"
    try:
        return _main(argv)
    finally:
        del os.environ["COLUMNS"]


def _main(argv: list[str]) -> int:
    command = _command_in(argv)
    parser = build_parser(command if command in COMMANDS else None)
    args = parse(parser, argv)
    if args.command is None:
        parser.print_help()
        return 2
    from thresher.curate.errors import ThresherError
    from thresher.curate.io.claims import guard

    try:
        with guard(args):  # no output may be an input; each output is locked while the command runs
            return importlib.import_module(args._module).run(args)
    except ThresherError as exc:
        print(f"thresher {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"thresher {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `thresher stats --json | head`: the reader left, not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a folder that cannot be written, a full disk: the user's to fix
        print(f"thresher {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug of ours: one line by default, the traceback on request
        if os.environ.get("THRESHER_DEBUG"):
            raise
        print(f"thresher {args.command}: error: {type(exc).__name__}: {exc} "
              "(set THRESHER_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
