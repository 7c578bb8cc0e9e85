"""OpenAI / TRL conversational ``messages``: ``[{role, content, tool_calls?}]``.

OpenAI ``tool_calls`` (``{type: function, function: {name, arguments}}``) map to
canonical tool calls. Content must be a string: a list of content parts is an
error, since thresher records are text-only.
"""

from __future__ import annotations

from typing import Any

from thresher.schemas import Dialogue, Message, Preference, Record, json_type_name
from thresher.curate.errors import RecordError
from thresher.curate.io.formats.base import Mapped, MessageSource, as_dialogue, items, unsupported


def message(value: Any, where: str) -> tuple[dict[str, Any], MessageSource]:
    """One OpenAI-style message as a canonical message dict."""
    if not isinstance(value, dict):
        raise RecordError(where, f"message must be an object, got {json_type_name(value)}")
    result: dict[str, Any] = {"role": value.get("role"), "content": value.get("content")}
    calls = value.get("tool_calls")
    if calls:
        if not isinstance(calls, list):
            raise RecordError(f"{where}.tool_calls", f"must be an array, got {json_type_name(calls)}")
        result["tool_calls"] = [_call(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(calls)]
        if result["content"] is None:
            result["content"] = ""
    return result, (where, "content")


def _call(call: Any, where: str) -> dict[str, Any]:
    function = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(function, dict) or "name" not in function:
        raise RecordError(where, "tool call must have a function name")
    return {"name": function["name"], "arguments": function.get("arguments", "{}")}


def message_list(row: dict[str, Any], key: str) -> tuple[list[dict[str, Any]], list[MessageSource]]:
    """The list field ``key`` of ``row`` as canonical message dicts plus their sources."""
    messages, sources = [], []
    for index, value in enumerate(items(row, key)):
        converted, source = message(value, f"{key}[{index}]")
        messages.append(converted)
        sources.append(source)
    return messages, sources


def parse(row: dict[str, Any]) -> Mapped:
    """Map one ``{"messages": [...]}`` row to a Dialogue."""
    messages, sources = message_list(row, "messages")
    data: dict[str, Any] = {"messages": messages}
    if isinstance(row.get("tools"), str):
        data["tools"] = row["tools"]
    return Mapped(Dialogue, data, {"messages": sources})


def render_message(message: Message) -> dict[str, Any]:
    """One canonical message in the OpenAI chat shape."""
    result: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        result["tool_calls"] = [
            {"type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in message.tool_calls
        ]
    return result


def render(record: Record) -> dict[str, Any]:
    """A Dialogue or QA as ``{"messages": [...]}``; a Preference as TRL's conversational
    ``prompt`` / ``chosen`` / ``rejected`` message lists."""
    record = as_dialogue(record)
    if isinstance(record, Dialogue):
        row: dict[str, Any] = {"messages": [render_message(m) for m in record.messages]}
        if record.tools:
            row["tools"] = record.tools
        return row
    if isinstance(record, Preference):
        return {
            "prompt": [render_message(m) for m in record.prompt],
            "chosen": [render_message(record.chosen)],
            "rejected": [render_message(record.rejected)],
        }
    raise unsupported(record, "messages")
