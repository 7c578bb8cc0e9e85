"""TRL's standard and conversational ``prompt`` / ``completion`` / ``chosen`` / ``rejected``.

Each field may be a plain string (standard format) or a list of messages
(conversational format). Preference data with no ``prompt`` is TRL's
"implicit prompt" shape: ``chosen`` and ``rejected`` are whole conversations
sharing every turn but the last, and the shared turns are the prompt.
"""

from __future__ import annotations

from typing import Any

from ...schemas import Dialogue, Preference, json_type_name
from ..errors import RecordError
from .base import Mapped, MessageSource, need
from .messages import message_list


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
    return Mapped(Dialogue, {"messages": prompt + completion}, {"messages": prompt_sources + completion_sources})


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
