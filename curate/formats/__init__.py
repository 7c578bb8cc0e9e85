"""Record formats: detection per record and mapping into the canonical records.

``detect(row)`` names the format of one raw row by its keys; ``to_record(row)``
maps it to the canonical ``Record`` (raising ``RecordError`` with the source
field on failure). ``validate`` and ``convert`` share this one mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...schemas import Record
from ..errors import RecordError
from . import alpaca, messages, plain, sharegpt, trl, xtuner
from .base import Mapped

#: Format name -> mapper from a raw row to canonical field values.
PARSERS: dict[str, Callable[[dict[str, Any]], Mapped]] = {
    "alpaca": alpaca.parse,
    "sharegpt": sharegpt.parse,
    "messages": messages.parse,
    "prompt-completion": trl.parse_completion,
    "preference": trl.parse_preference,
    "xtuner": xtuner.parse,
    "qa": plain.parse_qa,
    "scored": plain.parse_scored,
    "document": plain.parse_document,
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
    if "question" in row and "answer" in row:
        return "qa"
    if "instruction" in row:
        return "alpaca"  # an alpaca record missing its output: report that, not "unrecognised"
    if "text" in row:
        return "document"
    keys = ", ".join(sorted(row)) or "none"
    raise RecordError("", f"unrecognised record format (keys: {keys})")


def to_record(row: dict[str, Any], fmt: str | None = None, context: dict[str, Any] | None = None) -> Record:
    """Map ``row`` (in ``fmt``, or detected) to its canonical record."""
    return PARSERS[fmt or detect(row)](row).build(context)
