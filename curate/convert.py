"""``thresher convert``: any record format in, the format a trainer reads out.

Every row goes through the canonical records (the same mapping ``validate``
uses) and is rendered by the target's renderer, so a conversion is lossless
wherever the target can hold the record. What it cannot hold (a multi-turn
dialogue to ``qa``, tool calls to ``alpaca``) goes to the rejects file with
the reason, never silently shortened; ``--last-turn`` opts into keeping the
final exchange instead. Reward data (``outputs: [{response, score}]``)
expands into preference pairs and ``entity`` + ``facts`` rows into one QA
per fact, so counts are kept in canonical records: records in = converted +
rejected.

Rows are parsed and rendered by ``--workers`` processes or a Ray cluster
(``--engine ray``), piece by piece; ``-o OUT/`` writes one part per piece.
A LLaMA-Factory folder is one dataset of one kind, so its records are
written (and a second kind refused) in input order by this process.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thresher.schemas import QA, Dialogue, Preference, Record, Scored
from thresher.curate.engines import Job
from thresher.curate.engines import add_arguments as add_engine_arguments
from thresher.curate.io.claims import InputPath, OutputPath
from thresher.curate.errors import RecordError, ThresherError
from thresher.curate.io.formats import FORMATS, RENDERERS, CannotRender, looks_like, to_records
from thresher.curate.io.formats.base import as_dialogue
from thresher.curate.io.llamafactory import STYLES, LlamaFactoryWriter
from thresher.curate.io.readers import Row
from thresher.curate.io.shards import read_piece
from thresher.curate.io.writers import RecordWriter, TabularError, csv_row
from thresher.curate.stage import PieceStage, Stage, default_sidecar

if TYPE_CHECKING:
    from thresher.curate.engines import Engine
    from thresher.curate.io.shards import Piece

TARGETS: tuple[str, ...] = (*RENDERERS, "llamafactory")
ALLOW = {"allow_placeholders": True}


def replace_system(record: Record, system: str) -> Record:
    """``record`` with its system prompt set to ``system`` (added, or replacing the old one)."""
    if isinstance(record, QA):
        return record.model_copy(update={"system": system})
    field = "messages" if isinstance(record, Dialogue) else "prompt" if isinstance(record, Preference) else None
    if field is None:  # a corpus document has no system prompt
        return record
    messages = [m.model_dump() for m in getattr(record, field) if m.role != "system"]
    data = record.model_dump(exclude={"id"})
    data[field] = [{"role": "system", "content": system}, *messages]
    return type(record).model_validate({**data, "meta": record.meta}, context=ALLOW)


def last_turn(record: Record) -> Record:
    """``record`` cut to its system prompt and its final exchange (from the last user turn on)."""
    record = as_dialogue(record)
    field = "messages" if isinstance(record, Dialogue) else "prompt" if isinstance(record, Preference) else None
    if field is None:
        return record
    messages = getattr(record, field)
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    kept = ([messages[0]] if messages[0].role == "system" else []) + messages[last_user:]
    data = record.model_dump(exclude={"id"})
    data[field] = [m.model_dump() for m in kept]
    return type(record).model_validate({**data, "meta": record.meta}, context=ALLOW)


class Converter:
    """Turns rows into canonical records ready to render, with the options of one run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.fmt = args.fmt
        self.system = args.system
        self.min_margin = args.min_margin
        self.label_template = args.label_template
        self.context = ALLOW if args.allow_placeholders else None

    def records(self, row: Row) -> list[Record]:
        """The canonical records of one row (several for reward data and facts); RecordError when invalid."""
        if row.data is None:
            raise RecordError("", row.error or "unreadable")
        records = to_records(row.data, self.fmt, self.context, self.label_template)
        expanded: list[Record] = []
        for record in records:
            if isinstance(record, Scored):
                pairs = record.to_preferences(self.min_margin)
                if not pairs:
                    raise RecordError("", f"no pair of responses differs in score by more than {self.min_margin}")
                expanded.extend(pairs)
            else:
                expanded.append(record)
        if self.system is not None:
            expanded = [replace_system(r, self.system) for r in expanded]
        return expanded


#: Renderer options and the targets that take them (flag -> keyword of the renderer).
RENDER_OPTIONS = {"plain_text": ("prompt-completion",), "string_arguments": ("messages", "prompt-completion")}


def render_options(args: argparse.Namespace) -> dict[str, bool]:
    """The renderer keywords this run asked for; a flag the target has no use for is a usage error."""
    options = {}
    for name, targets in RENDER_OPTIONS.items():
        if getattr(args, name, False):
            if args.to not in targets:
                raise ThresherError(f"--{name.replace('_', '-')} applies to --to {' or '.join(targets)}")
            options[name] = True
    return options


class Renderer:
    """Records as rows of the target format, refusing (``CannotRender``) what the output cannot hold."""

    def __init__(self, target: str, csv: bool = False, options: dict[str, bool] | None = None) -> None:
        self.render, self.csv = partial(RENDERERS[target], **(options or {})), csv

    def row(self, record: Record) -> dict[str, Any]:
        row = self.render(record)
        if "label" in record.meta:  # KTO desirability tag, as TRL's unpaired preference data spells it
            row["label"] = record.meta["label"]
        if self.csv:
            try:
                csv_row(row)
            except TabularError as exc:
                raise CannotRender(str(exc)) from None
        return row


class Kept:
    """A worker's output: each rendered row is kept in the piece (its part file, or held for the driver)."""

    def __init__(self, renderer: Renderer, out: PieceStage) -> None:
        self.renderer, self.out = renderer, out

    def write(self, record: Record) -> None:
        self.out.keep(self.renderer.row(record))


class Counted:
    """This process's LLaMA-Factory output, counting each record it takes in ``stage``."""

    def __init__(self, output: LlamaFactoryWriter, stage: Stage) -> None:
        self.output, self.stage = output, stage

    def write(self, record: Record) -> None:
        self.output.write(record)
        self.stage.keep()


Parsed = list[Record] | RecordError


@dataclass
class FileTally:
    """One input's rows, what was kept of them and why the rest went: for the empty and all-rejected rules."""

    rows: int = 0
    kept: int = 0
    sample: dict[str, Any] | None = None
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, other: FileTally) -> None:
        """A later piece of the same input."""
        self.rows += other.rows
        self.kept += other.kept
        self.sample = self.sample or other.sample
        self.reasons.update(other.reasons)


def convert_row(row: Row, parsed: Parsed, stage: Stage | PieceStage, output: Kept | Counted, last: bool,
                tally: FileTally) -> None:
    """Every record of one row into ``output`` (which counts it kept) or into ``stage``'s rejects."""
    tally.rows += 1
    tally.sample = tally.sample or row.data
    if isinstance(parsed, RecordError):
        stage.seen()
        stage.remove(row, reason_of(parsed), field=parsed.field, error=parsed.reason)
        tally.reasons[reason_of(parsed)] += 1
        return
    stage.seen(len(parsed))
    for part, record in enumerate(parsed):
        detail = {"part": part, "parts": len(parsed)} if len(parsed) > 1 else {}
        try:
            write_one(output, record, last)
        except CannotRender as exc:
            stage.remove(row, exc.reason, **detail)
            tally.reasons[exc.reason] += 1
            continue
        tally.kept += 1


def check_inputs(tallies: dict[str, FileTally], forced: str | None) -> bool:
    """Warn about empty inputs; report every input whose records were all rejected. True when one was."""
    failed = False
    for path, tally in tallies.items():
        if tally.rows == 0:
            print(f"warning: {path}: no records", file=sys.stderr)
        elif tally.kept == 0:
            reason, count = tally.reasons.most_common(1)[0]
            print(f"error: every record of {path} was rejected ({reason}: {count}); {looks_like(tally.sample, forced)}",
                  file=sys.stderr)
            failed = True
    return failed


class ConvertJob(Job):
    """Parse one piece; render and keep or reject each record (file targets), or hand the parsed
    records back (``parse_only``: a LLaMA-Factory folder, written in order by the driver)."""

    def __init__(self, args: argparse.Namespace, csv: bool = False, parse_only: bool = False) -> None:
        self.args, self.csv, self.parse_only = args, csv, parse_only
        self.converter: Converter | None = None

    def setup(self) -> None:
        self.converter = Converter(self.args)

    def parse(self, row: Row) -> Parsed:
        assert self.converter is not None, "setup() first"
        try:
            return self.converter.records(row)
        except RecordError as exc:
            return exc

    def __call__(self, piece: Piece) -> Any:
        if self.parse_only:
            return [(row, self.parse(row)) for row in read_piece(piece)]
        tally = FileTally()
        with PieceStage("convert", piece, self.parts) as out:
            kept = Kept(Renderer(self.args.to, self.csv, render_options(self.args)), out)
            for row in read_piece(piece):
                convert_row(row, self.parse(row), out, kept, self.args.last_turn, tally)
        out.result.note = tally
        return out.result


def convert_paths(args: argparse.Namespace, engine: Engine) -> tuple[Stage, Path, dict[str, FileTally]]:
    """Convert ``args.paths`` into ``args.output`` on ``engine``; returns the finished Stage, the rejects path
    and each input's tally."""
    from thresher.curate.io.parts import Parts, is_folder_output
    from thresher.curate.io.shards import expand_inputs, plan
    from thresher.curate.stage import run_pieces

    render_options(args)  # a flag the target has no use for is refused before any work
    pieces = plan(expand_inputs(args.paths))
    tallies = {piece.path: FileTally() for piece in pieces}
    out = Path(args.output)
    if args.to == "llamafactory":
        if out.exists() and not out.is_dir():
            raise ThresherError(f"{out}: llamafactory output must be a folder")
        rejects = Path(args.rejects) if args.rejects else default_sidecar(out, "rejects")
        output = LlamaFactoryWriter(out, args.name, args.style)
        with Stage("convert", rejects, default_sidecar(out, "stats")) as stage, output:
            counted = Counted(output, stage)
            for piece, parsed_rows in zip(pieces, engine.map(ConvertJob(args, parse_only=True), pieces)):
                for row, parsed in parsed_rows:
                    convert_row(row, parsed, stage, counted, args.last_turn, tallies[piece.path])
        return stage, rejects, tallies

    def note(piece: Piece, tally: FileTally) -> None:
        tallies[piece.path].add(tally)

    if is_folder_output(out):
        stage = run_pieces("convert", engine, ConvertJob(args), pieces, str(out), args.rejects,
                           removed_name="rejects", on_note=note)
        return stage, Parts.of(out, args.rejects, None, "rejects").removed, tallies
    csv = RecordWriter(out).type == ".csv"  # also refuses an unknown suffix, before any work
    rejects = Path(args.rejects) if args.rejects else default_sidecar(out, "rejects")
    stage = run_pieces("convert", engine, ConvertJob(args, csv), pieces, str(out), str(rejects),
                       removed_name="rejects", on_note=note)
    return stage, rejects, tallies


def write_one(output: Kept | Counted, record: Record, keep_last_turn: bool) -> None:
    """Write ``record``; with ``keep_last_turn``, retry with only its final exchange when it does not fit."""
    try:
        output.write(record)
    except CannotRender:
        if not keep_last_turn:
            raise
        shorter = last_turn(record)
        if shorter == as_dialogue(record):
            raise
        output.write(shorter)


def reason_of(exc: RecordError) -> str:
    """The rejects reason of an invalid row, grouped as validate groups it (the field is in the detail)."""
    from thresher.curate.validate import reason_category

    return f"invalid: {reason_category(exc.reason)}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=InputPath, metavar="IN", help="record files, folders of them, globs, datasets folders")
    parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="OUT",
                        help="output file (.jsonl/.json/.parquet/.csv, .gz allowed), a folder OUT/ for one part per "
                             "piece, or, for llamafactory, its data folder")
    parser.add_argument("--to", required=True, choices=TARGETS, help="target format")
    parser.add_argument("--from", dest="fmt", choices=FORMATS, help="force the source format instead of detecting it")
    parser.add_argument("--system", metavar="TEXT", help="set or override the system prompt of every output record")
    parser.add_argument("--last-turn", action="store_true",
                        help="keep only the final exchange of a record the target cannot hold whole")
    parser.add_argument("--rejects", type=OutputPath, metavar="FILE", help="where rejected records go (default: beside OUT, .rejects.jsonl)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any record was rejected")
    parser.add_argument("--min-margin", type=float, default=0.0, metavar="X",
                        help="reward data: pair two responses only when their scores differ by more than X (default 0)")
    parser.add_argument("--label-template", metavar="zh|en|TEXT",
                        help="classification (text+label) instruction: zh, en, or a template with {text}; "
                             "default: zh for Chinese text, en otherwise")
    parser.add_argument("--allow-placeholders", action="store_true",
                        help="keep records with {{name}}-style placeholders (for thresher rename to fill later)")
    parser.add_argument("--style", choices=STYLES, default="sharegpt",
                        help="llamafactory: the data file's formatting (default sharegpt, which holds tools too)")
    parser.add_argument("--name", help="llamafactory: dataset name in dataset_info.json (default: OUT's folder name)")
    parser.add_argument("--plain-text", action="store_true",
                        help="prompt-completion: write plain strings (TRL's standard form) instead of message lists; "
                             "records with several turns, a system prompt or tools are rejected")
    parser.add_argument("--string-arguments", action="store_true",
                        help="messages/prompt-completion: write tool-call arguments as JSON text (OpenAI's fine-tuning "
                             "upload format) instead of objects (what chat templates and TRL read)")
    add_engine_arguments(parser, "processes converting pieces of the input")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from thresher.curate.engines import engine_from

    if args.label_template and args.label_template not in ("zh", "en") and "{text}" not in args.label_template:
        raise ThresherError("--label-template must be zh, en, or contain {text}")
    stage, rejects, tallies = convert_paths(args, engine_from(args))
    stats = stage.stats()
    reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(stats["removed"].items(), key=lambda kv: -kv[1]))
    line = f"convert: {stats['in']} records in, {stats['kept']} converted to {args.to}, {stats['removed_total']} rejected"
    Console(stderr=False).print(escape(line + (f" ({reasons})" if reasons else "")), highlight=False, soft_wrap=True)
    if stats["removed_total"]:
        Console().print(f"rejects: {escape(str(rejects))}", highlight=False, soft_wrap=True)
    all_rejected = check_inputs(tallies, args.fmt)
    return 1 if all_rejected or (args.strict and stats["removed_total"]) else 0
