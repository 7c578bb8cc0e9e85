"""Record formats: detection per record, mapping into and rendering out of the canonical records.

``detect(row)`` names the format of one raw row by its keys; ``to_records(row)``
maps it to its canonical ``Record`` (or several: an ``entity`` + ``facts``
row holds one QA per fact), raising ``RecordError`` with the source field on
failure. ``RENDERERS`` turn a canonical record back into a raw row of a
target format, raising ``CannotRender`` when the target cannot hold it.
``validate`` and ``convert`` share this one mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from thresher.schemas import Record
from thresher.curate.errors import RecordError
from thresher.curate.io.formats import alpaca
from thresher.curate.io.formats import messages
from thresher.curate.io.formats import plain
from thresher.curate.io.formats import sharegpt
from thresher.curate.io.formats import trl
from thresher.curate.io.formats import xtuner
from thresher.curate.io.formats.base import CannotRender, Mapped

#: Format name -> mapper from a raw row to canonical field values (a list when one row holds several records).
PARSERS: dict[str, Callable[[dict[str, Any]], Mapped | list[Mapped]]] = {
    "alpaca": alpaca.parse,
    "sharegpt": sharegpt.parse,
    "messages": messages.parse,
    "prompt-completion": trl.parse_completion,
    "preference": trl.parse_preference,
    "xtuner": xtuner.parse,
    "qa": plain.parse_qa,
    "scored": plain.parse_scored,
    "document": plain.parse_document,
    "input-target": plain.parse_input_target,
    "classification": plain.parse_classification,
    "facts": plain.parse_facts,
}

#: Target format name -> renderer from a canonical record to a raw row.
RENDERERS: dict[str, Callable[[Record], dict[str, Any]]] = {
    "alpaca": alpaca.render,
    "sharegpt": sharegpt.render,
    "messages": messages.render,
    "prompt-completion": trl.render,
    "xtuner": xtuner.render,
    "qa": plain.render_qa,
}

FORMATS: tuple[str, ...] = tuple(PARSERS)


def detect(row: dict[str, Any]) -> str:
    """Name the format of ``row`` from its keys, most specific first."""
    if "conversations" in row:
        return "sharegpt"
    if "messages" in row:
        return "messages"
    if "conversation" in row:
        return "xtuner"
    if "instruction" in row and ("output" in row or "chosen" in row or "rejected" in row):
        return "alpaca"
    if "outputs" in row or "responses" in row:
        return "scored"
    if "chosen" in row and "rejected" in row:
        return "preference"
    if "prompt" in row and "completion" in row:
        return "prompt-completion"
    if "input" in row and "target" in row:
        return "input-target"
    if "question" in row and "answer" in row:
        return "qa"
    if "entity" in row and "facts" in row:
        return "facts"
    if "text" in row and "label" in row:
        return "classification"
    if "instruction" in row:
        return "alpaca"  # an alpaca record missing its output: report that, not "unrecognised"
    if "text" in row:
        return "document"
    keys = ", ".join(sorted(row)) or "none"
    raise RecordError("", f"unrecognised record format (keys: {keys})")


def looks_like(row: dict[str, Any] | None, forced: str | None = None) -> str:
    """What the records of a file seem to be, for the message when every one of them was rejected.

    A ``--from`` that matches nothing is the usual cause (alpaca data read
    with ``--from sharegpt``), so the hint names the detected format and says
    what to pass instead.
    """
    if not isinstance(row, dict):
        return "the records are not JSON objects"
    try:
        seen = detect(row)
    except RecordError as exc:
        return f"they match no known format ({exc.reason})"
    if forced and forced != seen:
        return f"they look like {seen} records, not {forced}: use --from {seen} or leave --from out"
    return f"they look like {seen} records"


def to_records(
    row: dict[str, Any],
    fmt: str | None = None,
    context: dict[str, Any] | None = None,
    label_template: str | None = None,
) -> list[Record]:
    """Map ``row`` (in ``fmt``, or detected) to its canonical records.

    ``label_template`` is the instruction template of classification rows
    (see ``plain.parse_classification``). A boolean ``label`` beside a
    conversation is a KTO desirability tag: it is kept in ``meta["label"]``
    so a conversion can write it back.
    """
    fmt = fmt or detect(row)
    if fmt == "classification":
        mapped: Mapped | list[Mapped] = plain.parse_classification(row, label_template)
    else:
        mapped = PARSERS[fmt](row)
    records = [m.build(context) for m in (mapped if isinstance(mapped, list) else [mapped])]
    label = row.get("label")
    if isinstance(label, bool) and fmt != "classification":
        records = [r.model_copy(update={"meta": {**r.meta, "label": label}}) for r in records]
    return records


def to_record(row: dict[str, Any], fmt: str | None = None, context: dict[str, Any] | None = None) -> Record:
    """Map ``row`` to its canonical record; of a row holding several, every one is
    checked and the first returned (``validate`` asks one question per row)."""
    return to_records(row, fmt, context)[0]


__all__ = ["FORMATS", "PARSERS", "RENDERERS", "CannotRender", "detect", "looks_like", "to_record", "to_records"]
