"""sharegpt: ``conversations`` of ``{from, value}`` turns, ``system``, ``tools``.

Roles follow LLaMA-Factory: ``human``/``gpt``/``system``/``function_call``/
``observation`` (``user``/``assistant``/``tool`` and ``role``/``content`` keys
are accepted too). A ``function_call`` turn becomes an assistant message with
``tool_calls``; an ``observation`` becomes a ``tool`` message. The preference
shape ends ``conversations`` on a human turn and adds ``chosen`` / ``rejected``
as single turns.
"""

from __future__ import annotations

import json
from typing import Any

from thresher.schemas import Dialogue, Message, Preference, Record, json_type_name
from thresher.curate.errors import RecordError
from thresher.curate.io.formats.base import Mapped, MessageSource, as_dialogue, items, need, text, unsupported

ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool", "tool": "tool", "function": "tool",
}


def tool_calls(value: str, where: str) -> list[dict[str, str]]:
    """Parse a function_call turn: one ``{name, arguments}`` object or a list of them."""
    try:
        calls = json.loads(value)
    except (TypeError, json.JSONDecodeError):
        raise RecordError(where, "function_call must be JSON with name and arguments") from None
    calls = calls if isinstance(calls, list) else [calls]
    parsed = []
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise RecordError(where, "function_call must be JSON with name and arguments")
        arguments = call.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        parsed.append({"name": call["name"], "arguments": arguments})
    return parsed


def turn(value: Any, where: str) -> tuple[dict[str, Any], MessageSource]:
    """One ``{from, value}`` (or ``{role, content}``) turn as a canonical message dict."""
    if not isinstance(value, dict):
        raise RecordError(where, f"turn must be an object, got {json_type_name(value)}")
    role_key, text_key = ("from", "value") if "from" in value else ("role", "content")
    speaker = value.get(role_key)
    if speaker not in ROLES:
        raise RecordError(f"{where}.{role_key}", f"unknown role {speaker!r}")
    content = value.get(text_key)
    if speaker == "function_call":
        calls = tool_calls(content, f"{where}.{text_key}")
        return {"role": "assistant", "content": "", "tool_calls": calls}, (where, text_key)
    return {"role": ROLES[speaker], "content": content}, (where, text_key)


def parse(row: dict[str, Any]) -> Mapped:
    """Map one sharegpt row to a Dialogue, or a Preference when it has chosen/rejected."""
    messages: list[dict[str, Any]] = []
    sources: list[MessageSource] = []
    system = text(row, "system", required=False)
    if system:
        messages.append({"role": "system", "content": system})
        sources.append(("system", None))
    for index, value in enumerate(items(row, "conversations")):
        message, source = turn(value, f"conversations[{index}]")
        messages.append(message)
        sources.append(source)
    tools = row.get("tools")
    if tools is not None and not isinstance(tools, str):
        tools = json.dumps(tools, ensure_ascii=False)
    if "chosen" in row or "rejected" in row:
        chosen, chosen_source = turn(need(row, "chosen"), "chosen")
        rejected, rejected_source = turn(need(row, "rejected"), "rejected")
        return Mapped(
            Preference,
            {"prompt": messages, "chosen": chosen, "rejected": rejected},
            {"prompt": sources, "chosen": chosen_source, "rejected": rejected_source},
        )
    data: dict[str, Any] = {"messages": messages}
    if tools:
        data["tools"] = tools
    return Mapped(Dialogue, data, {"messages": sources})


#: Canonical role -> the sharegpt speaker LLaMA-Factory expects.
SPEAKERS = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}


def render_arguments(arguments: str) -> Any:
    """Tool-call arguments as a JSON object when that reads back to the same text, else as text.

    LLaMA-Factory's files hold arguments as objects; ``tool_calls`` above
    serialises an object with ``json.dumps(ensure_ascii=False)``, so only text
    in exactly that spelling may be written as an object without changing
    the canonical record.
    """
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
    return value if json.dumps(value, ensure_ascii=False) == arguments else arguments


def render_turn(message: Message) -> dict[str, str]:
    """One canonical message as a ``{from, value}`` turn."""
    if message.tool_calls:
        calls = [{"name": c.name, "arguments": render_arguments(c.arguments)} for c in message.tool_calls]
        value = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
        return {"from": "function_call", "value": value}
    return {"from": SPEAKERS[message.role], "value": message.content}


def render(record: Record) -> dict[str, Any]:
    """A Dialogue, QA or Preference as one sharegpt row (system and tools as columns)."""
    record = as_dialogue(record)
    if isinstance(record, Dialogue):
        messages = record.messages
    elif isinstance(record, Preference):
        messages = record.prompt
    else:
        raise unsupported(record, "sharegpt")
    system = messages[0].content if messages[0].role == "system" else None
    row: dict[str, Any] = {"conversations": [render_turn(m) for m in messages[1 if system is not None else 0 :]]}
    if system:
        row["system"] = system
    if isinstance(record, Preference):
        row["chosen"] = render_turn(record.chosen)
        row["rejected"] = render_turn(record.rejected)
    elif record.tools:
        row["tools"] = record.tools
    return row
