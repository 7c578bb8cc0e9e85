"""Shared pieces of the format mappers: source-aware field access and errors.

A mapper turns one raw row into the arguments of a canonical record and
remembers which source field each canonical part came from. When Pydantic
rejects the record, ``Mapped.build`` translates its error location back to the
field as the user's file spells it (``conversations[3].value``, not
``messages.3.content``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from thresher.schemas import QA, Dialogue, Message, Record, TurnOrderError, json_type_name
from thresher.curate.errors import RecordError

#: Where one canonical message came from: (the message's path, its text key or None
#: when the path itself is the text).
MessageSource = tuple[str, str | None]


@dataclass
class Mapped:
    """Canonical field values for ``kind`` plus the source of each part."""

    kind: type[Record]
    data: dict[str, Any]
    sources: dict[str, str | MessageSource | list[MessageSource]] = field(default_factory=dict)

    def build(self, context: dict[str, Any] | None = None) -> Record:
        """Validate into the canonical record, naming source fields in any error."""
        try:
            return self.kind.model_validate(self.data, context=context)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            raise RecordError(self._where(error), _reason(error)) from None

    def _where(self, error: dict[str, Any]) -> str:
        loc = error["loc"]
        if not loc:
            return ""
        name, rest = str(loc[0]), loc[1:]
        source = self.sources.get(name, name)
        if isinstance(source, list):
            index = rest[0] if rest and isinstance(rest[0], int) else _turn_index(error)
            if index is None or index >= len(source):
                return name if not source else source[0][0].split("[")[0]
            path, text_key = source[index]
            return _join(path, text_key) if len(rest) > 1 else path
        if isinstance(source, tuple):
            path, text_key = source
            return _join(path, text_key) if rest else path
        return source + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest)


def _join(path: str, key: str | None) -> str:
    return f"{path}.{key}" if key else path


def _turn_index(error: dict[str, Any]) -> int | None:
    cause = (error.get("ctx") or {}).get("error")
    return cause.index if isinstance(cause, TurnOrderError) and cause.index >= 0 else None


def _reason(error: dict[str, Any]) -> str:
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, Exception):
        return str(cause)
    if error["type"] == "missing":
        return "missing"
    if error["type"] == "literal_error":
        return f"{error['msg'].lower()}, got {error['input']!r}"
    return error["msg"]


def text(row: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    """A string field of ``row``; a missing required field or a non-string is a RecordError."""
    value = row.get(key)
    if value is None:
        if required:
            raise RecordError(key, "missing")
        return None
    if not isinstance(value, str):
        raise RecordError(key, f"must be a string, got {json_type_name(value)}")
    return value


def need(row: dict[str, Any], key: str) -> Any:
    """A field that must be present; its type is checked by the canonical model."""
    if row.get(key) is None:
        raise RecordError(key, "missing")
    return row[key]


def items(row: dict[str, Any], key: str) -> list[Any]:
    """A list field of ``row`` (a JSON array)."""
    value = row.get(key)
    if value is None:
        raise RecordError(key, "missing")
    if not isinstance(value, list):
        raise RecordError(key, f"must be an array, got {json_type_name(value)}")
    return value


class CannotRender(RecordError):
    """A canonical record the target format cannot hold; ``reason`` says what would be lost.

    Convert writes such records to its rejects file instead of silently
    dropping turns, tools or a system prompt.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("", reason)


def as_dialogue(record: Record) -> Record:
    """A QA record in its lossless Dialogue form; every other record unchanged."""
    if not isinstance(record, QA):
        return record
    # The record was validated when it was read; placeholders it was allowed to keep stay allowed.
    return Dialogue.model_validate(
        {"messages": qa_messages(record), "meta": record.meta},
        context={"allow_placeholders": True},
    )


def qa_messages(record: QA) -> list[dict[str, str]]:
    """The two or three messages of ``QA.to_dialogue`` as plain dicts."""
    messages = [{"role": "system", "content": record.system}] if record.system else []
    return messages + [{"role": "user", "content": record.question}, {"role": "assistant", "content": record.answer}]


def exchanges(messages: list[Message], target: str) -> tuple[str | None, list[tuple[str, str]], str | None]:
    """Split messages into (system, [(user, assistant), ...], trailing user or None).

    For targets that only hold plain user/assistant pairs (alpaca, xtuner,
    qa); a tool call or tool result cannot be expressed there.
    """
    system = messages[0].content if messages and messages[0].role == "system" else None
    turns = messages[1:] if system is not None else messages
    if any(m.tool_calls or m.role == "tool" for m in turns):
        raise CannotRender(f"tool calls do not fit {target}")
    pairs = [(turns[i].content, turns[i + 1].content) for i in range(0, len(turns) - 1, 2)]
    trailing = turns[-1].content if len(turns) % 2 else None
    return system, pairs, trailing


def no_tools(record: Record, target: str) -> None:
    """Reject a dialogue whose tool schemas the target has no field for."""
    if getattr(record, "tools", None):
        raise CannotRender(f"tool schemas do not fit {target}")


def unsupported(record: Record, target: str) -> CannotRender:
    """The error for a record kind the target has no shape for."""
    return CannotRender(f"a {record.kind} record does not fit {target}")


def reply_text(message: Message, target: str) -> str:
    """An assistant reply's text, for targets whose replies are plain strings."""
    if message.tool_calls:
        raise CannotRender(f"tool calls do not fit {target}")
    return message.content
