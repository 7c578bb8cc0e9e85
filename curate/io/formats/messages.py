"""OpenAI / TRL conversational ``messages``: ``[{role, content, tool_calls?}]``.

OpenAI ``tool_calls`` (``{type: function, function: {name, arguments}}``) map to
canonical tool calls. Content must be a string: a list of content parts is an
error, since thresher records are text-only.

Tool-call ``arguments`` are written as JSON objects by default: that is what
transformers chat templates and TRL read (a string would be trained
double-encoded). ``string_arguments=True`` writes OpenAI's wire form (JSON
text), which OpenAI's fine-tuning upload expects. Both are read back.
"""

from __future__ import annotations

import json
from typing import Any

from thresher.schemas import Dialogue, Message, Preference, Record, json_type_name
from thresher.curate.errors import RecordError
from thresher.curate.io.formats.base import CannotRender, Mapped, MessageSource, as_dialogue, items, unsupported


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
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, dict):  # the object form thresher writes by default
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {"name": function["name"], "arguments": arguments}


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
    tools = row.get("tools")
    if isinstance(tools, (list, dict)):
        tools = json.dumps(tools, ensure_ascii=False)
    if tools:
        data["tools"] = tools
    return Mapped(Dialogue, data, {"messages": sources})


def arguments_object(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as the JSON object trainers read; ``CannotRender`` when the text is not one.

    Every row of a file then holds the same type (an object), which ``datasets`` needs.
    """
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise CannotRender("tool-call arguments are not a JSON object; use --string-arguments to write them as text")
    return value


def render_message(message: Message, string_arguments: bool = False) -> dict[str, Any]:
    """One canonical message in the OpenAI chat shape; arguments as objects unless ``string_arguments``."""
    result: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        result["tool_calls"] = [
            {"type": "function", "function": {
                "name": c.name, "arguments": c.arguments if string_arguments else arguments_object(c.arguments)}}
            for c in message.tool_calls
        ]
    return result


def render(record: Record, string_arguments: bool = False) -> dict[str, Any]:
    """A Dialogue or QA as ``{"messages": [...]}``; a Preference as TRL's conversational
    ``prompt`` / ``chosen`` / ``rejected`` message lists."""
    record = as_dialogue(record)
    if isinstance(record, Dialogue):
        row: dict[str, Any] = {"messages": [render_message(m, string_arguments) for m in record.messages]}
        if record.tools:
            row["tools"] = record.tools
        return row
    if isinstance(record, Preference):
        return {
            "prompt": [render_message(m, string_arguments) for m in record.prompt],
            "chosen": [render_message(record.chosen, string_arguments)],
            "rejected": [render_message(record.rejected, string_arguments)],
        }
    raise unsupported(record, "messages")
