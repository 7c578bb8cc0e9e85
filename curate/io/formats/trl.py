"""TRL's standard and conversational ``prompt`` / ``completion`` / ``chosen`` / ``rejected``.

Each field may be a plain string (standard format) or a list of messages
(conversational format); both are read. Written rows are conversational
unless asked otherwise (see ``render``). Preference data with no ``prompt`` is TRL's
"implicit prompt" shape: ``chosen`` and ``rejected`` are whole conversations
sharing every turn but the last, and the shared turns are the prompt.
"""

from __future__ import annotations

from typing import Any

from thresher.schemas import Dialogue, Message, Preference, Record, json_type_name
from thresher.curate.errors import RecordError
from thresher.curate.io.formats.base import CannotRender, Mapped, MessageSource, as_dialogue, need, unsupported
from thresher.curate.io.formats.messages import message_list, render_message


def _side(row: dict[str, Any], key: str, role: str) -> tuple[list[dict[str, Any]], list[MessageSource]]:
    """A field as messages: a string is one ``role`` turn, a list is taken as messages."""
    value = need(row, key)
    if isinstance(value, str):
        return [{"role": role, "content": value}], [(key, None)]
    if isinstance(value, list):
        return message_list(row, key)
    raise RecordError(key, f"must be a string or an array of messages, got {json_type_name(value)}")


def _single(messages: list[dict[str, Any]], sources: list[MessageSource], key: str):
    if len(messages) != 1:
        raise RecordError(key, f"must hold exactly one assistant message, holds {len(messages)}")
    return messages[0], sources[0]


def parse_completion(row: dict[str, Any]) -> Mapped:
    """``prompt`` + ``completion`` to a Dialogue."""
    prompt, prompt_sources = _side(row, "prompt", "user")
    completion, completion_sources = _side(row, "completion", "assistant")
    data: dict[str, Any] = {"messages": prompt + completion}
    if row.get("tools"):
        data["tools"] = row["tools"]
    return Mapped(Dialogue, data, {"messages": prompt_sources + completion_sources})


def parse_preference(row: dict[str, Any]) -> Mapped:
    """``prompt`` + ``chosen`` + ``rejected`` (explicit or implicit prompt) to a Preference."""
    chosen, chosen_sources = _side(row, "chosen", "assistant")
    rejected, rejected_sources = _side(row, "rejected", "assistant")
    if row.get("prompt") is not None:
        prompt, prompt_sources = _side(row, "prompt", "user")
    else:
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        prompt, prompt_sources = chosen[:shared], chosen_sources[:shared]
        chosen, chosen_sources = chosen[shared:], chosen_sources[shared:]
        rejected, rejected_sources = rejected[shared:], rejected_sources[shared:]
    chosen_message, chosen_source = _single(chosen, chosen_sources, "chosen")
    rejected_message, rejected_source = _single(rejected, rejected_sources, "rejected")
    return Mapped(
        Preference,
        {"prompt": prompt, "chosen": chosen_message, "rejected": rejected_message},
        {"prompt": prompt_sources, "chosen": chosen_source, "rejected": rejected_source},
    )


def _plain_side(messages: list[Message], role: str) -> str:
    """One side in TRL's standard (string) form: exactly one plain ``role`` turn, or ``CannotRender``."""
    if len(messages) != 1 or messages[0].role != role or messages[0].tool_calls:
        raise CannotRender("only single-turn records without system prompt or tools fit prompt-completion --plain-text")
    return messages[0].content


def render(record: Record, plain_text: bool = False, string_arguments: bool = False) -> dict[str, Any]:
    """A Dialogue or QA as ``prompt`` + ``completion`` (the final assistant turn);
    a Preference as ``prompt`` + ``chosen`` + ``rejected``.

    Every field is a message list (TRL's conversational form) unless
    ``plain_text``, which writes strings and refuses what a string cannot
    hold: so each column has one type in every row, as ``datasets`` and TRL need.
    """
    record = as_dialogue(record)
    if isinstance(record, Dialogue):
        if plain_text and record.tools:
            raise CannotRender("tool schemas do not fit prompt-completion --plain-text")
        prompt, completion = record.messages[:-1], record.messages[-1:]
        sides = {"prompt": (prompt, "user"), "completion": (completion, "assistant")}
    elif isinstance(record, Preference):
        sides = {"prompt": (record.prompt, "user"), "chosen": ([record.chosen], "assistant"),
                 "rejected": ([record.rejected], "assistant")}
    else:
        raise unsupported(record, "prompt-completion")
    if plain_text:
        row: dict[str, Any] = {key: _plain_side(list(messages), role) for key, (messages, role) in sides.items()}
    else:
        row = {key: [render_message(m, string_arguments) for m in messages] for key, (messages, _) in sides.items()}
    if isinstance(record, Dialogue) and record.tools:
        row["tools"] = record.tools
    return row
