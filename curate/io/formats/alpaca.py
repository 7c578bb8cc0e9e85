"""alpaca: ``instruction``, ``input``, ``output``, ``system``, ``history``.

The user turn is ``instruction`` and ``input`` joined by a newline, as
LLaMA-Factory joins them; ``history`` is a list of earlier ``[query, answer]``
pairs. The preference variant carries ``chosen`` / ``rejected`` strings
instead of ``output``. An ``output`` that is a list (a field habit for
"give three examples" data) becomes one numbered list.
"""

from __future__ import annotations

from typing import Any

from thresher.schemas import Dialogue, Preference, Record
from thresher.curate.errors import RecordError
from thresher.curate.io.formats.base import (
    Mapped, MessageSource, as_dialogue, exchanges, items, need, no_tools, reply_text, text, unsupported,
)


def parse(row: dict[str, Any]) -> Mapped:
    """Map one alpaca row to a Dialogue, or a Preference when it has chosen/rejected."""
    messages: list[dict[str, Any]] = []
    sources: list[MessageSource] = []
    system = text(row, "system", required=False)
    if system:
        messages.append({"role": "system", "content": system})
        sources.append(("system", None))
    if row.get("history"):
        for turn, pair in enumerate(items(row, "history")):
            if not isinstance(pair, list) or len(pair) != 2:
                raise RecordError(f"history[{turn}]", "must be a [query, answer] pair")
            for side, role in enumerate(("user", "assistant")):
                messages.append({"role": role, "content": pair[side]})
                sources.append((f"history[{turn}][{side}]", None))
    instruction = text(row, "instruction")
    extra = text(row, "input", required=False)
    messages.append({"role": "user", "content": f"{instruction}\n{extra}" if extra else instruction})
    sources.append(("input" if extra and not instruction.strip() else "instruction", None))
    if "chosen" in row or "rejected" in row:
        return Mapped(
            Preference,
            {
                "prompt": messages,
                "chosen": {"role": "assistant", "content": need(row, "chosen")},
                "rejected": {"role": "assistant", "content": need(row, "rejected")},
            },
            {"prompt": sources, "chosen": ("chosen", None), "rejected": ("rejected", None)},
        )
    messages.append({"role": "assistant", "content": numbered(need(row, "output"))})
    sources.append(("output", None))
    return Mapped(Dialogue, {"messages": messages}, {"messages": sources})


def numbered(output: Any) -> Any:
    """A list ``output`` as one numbered list (``1. a\\n2. b``); anything else unchanged."""
    if isinstance(output, list) and output and all(isinstance(item, str) for item in output):
        return "\n".join(f"{number}. {item}" for number, item in enumerate(output, 1))
    return output


def render(record: Record) -> dict[str, Any]:
    """A Dialogue, QA or Preference as one alpaca row (the whole user turn in ``instruction``)."""
    record = as_dialogue(record)
    if isinstance(record, Dialogue):
        no_tools(record, "alpaca")
        system, pairs, _ = exchanges(record.messages, "alpaca")
        *history, (instruction, output) = pairs
        row: dict[str, Any] = {"instruction": instruction, "input": "", "output": output}
    elif isinstance(record, Preference):
        system, history, instruction = exchanges(record.prompt, "alpaca")
        row = {"instruction": instruction, "input": "", "chosen": reply_text(record.chosen, "alpaca"),
               "rejected": reply_text(record.rejected, "alpaca")}
    else:
        raise unsupported(record, "alpaca")
    if system:
        row["system"] = system
    if history:
        row["history"] = [list(pair) for pair in history]
    return row
