"""xtuner: ``conversation: [{system?, input, output}, ...]``.

Each element is one exchange; a ``system`` in the first element is the
dialogue's system prompt (xtuner ignores it on later turns, and so do we only
if it repeats the first one; a different one is an error).
"""

from __future__ import annotations

from typing import Any

from thresher.schemas import Dialogue, Record, json_type_name
from thresher.curate.errors import RecordError
from thresher.curate.io.formats.base import Mapped, MessageSource, as_dialogue, exchanges, items, no_tools, unsupported


def parse(row: dict[str, Any]) -> Mapped:
    """Map one xtuner row to a Dialogue."""
    messages: list[dict[str, Any]] = []
    sources: list[MessageSource] = []
    system = None
    for index, exchange in enumerate(items(row, "conversation")):
        where = f"conversation[{index}]"
        if not isinstance(exchange, dict):
            raise RecordError(where, f"must be an object, got {json_type_name(exchange)}")
        if exchange.get("system"):
            if index == 0:
                system = exchange["system"]
                messages.append({"role": "system", "content": system})
                sources.append((f"{where}.system", None))
            elif exchange["system"] != system:
                raise RecordError(f"{where}.system", "a different system prompt after the first turn")
        for key, role in (("input", "user"), ("output", "assistant")):
            if key not in exchange:
                raise RecordError(f"{where}.{key}", "missing")
            messages.append({"role": role, "content": exchange[key]})
            sources.append((f"{where}.{key}", None))
    return Mapped(Dialogue, {"messages": messages}, {"messages": sources})


def render(record: Record) -> dict[str, Any]:
    """A Dialogue or QA as one xtuner row; the system prompt rides on the first exchange."""
    record = as_dialogue(record)
    if not isinstance(record, Dialogue):
        raise unsupported(record, "xtuner")
    no_tools(record, "xtuner")
    system, pairs, _ = exchanges(record.messages, "xtuner")
    conversation = [{"input": user, "output": assistant} for user, assistant in pairs]
    if system:
        conversation[0] = {"system": system, **conversation[0]}
    return {"conversation": conversation}
