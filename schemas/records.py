"""The data contract: one canonical Pydantic model per record kind.

Every file format thresher reads converts into one of these models and every
writer renders from them, so validation rules live in exactly one place.
Field names follow TRL and the OpenAI API (``messages``, ``prompt``,
``chosen``, ``rejected``).

Placeholder checking (``{{name}}`` and friends) is on by default; pass
``context={"allow_placeholders": True}`` to ``model_validate`` to turn it off,
which is what ``thresher rename`` does before it fills them.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from thresher.schemas.placeholders import find_placeholder

Role = Literal["system", "user", "assistant", "tool"]

_JSON_TYPE_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def json_type_name(value: object) -> str:
    """Name a Python value by its JSON type, the way a user sees it in the file."""
    if value is None:
        return "null"
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def require_text(value: object, info: ValidationInfo) -> str:
    """Accept only real strings and reject unreplaced placeholders.

    Pydantic's lax mode would turn ``5`` into ``"5"``; a number or an object
    where text belongs is a data bug (the xtuner ``input`` object bug, say),
    so it is an error that names the type found.
    """
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {json_type_name(value)}")
    if not (info.context and info.context.get("allow_placeholders")):
        placeholder = find_placeholder(value)
        if placeholder is not None:
            raise ValueError(f"unreplaced placeholder {placeholder}")
    return value


def require_optional_text(value: object, info: ValidationInfo) -> str | None:
    """``require_text`` for fields that may be absent (null)."""
    return None if value is None else require_text(value, info)


Text = Annotated[str, BeforeValidator(require_text)]
OptionalText = Annotated[str | None, BeforeValidator(require_optional_text)]


def normalize_space(text: str) -> str:
    """Collapse runs of whitespace, for comparisons that ignore layout."""
    return " ".join(text.split())


class Record(BaseModel):
    """Base of every record kind: a content hash ``id`` and free-form ``meta``.

    ``meta`` holds provenance (source file and line), scores and stage
    decisions; it never takes part in ``id``, so re-scoring a record does not
    change its identity.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = "record"

    meta: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def id(self) -> str:
        """Stable hash of the content (not of ``meta``)."""
        payload = json.dumps(
            self.model_dump(exclude={"meta", "id"}, exclude_none=True),
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.blake2b(f"{self.kind}:{payload}".encode(), digest_size=8).hexdigest()


class ToolCall(BaseModel):
    """One function call requested by the assistant; ``arguments`` is JSON text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text
    arguments: Text = "{}"


class Message(BaseModel):
    """One chat turn. ``content`` is always a string, never a list of parts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: Text
    tool_calls: list[ToolCall] | None = None

    @model_validator(mode="after")
    def _not_blank(self) -> Message:
        if self.role in ("user", "assistant") and not self.content.strip() and not self.tool_calls:
            raise ValueError(f"{self.role} content is blank")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self


class TurnOrderError(ValueError):
    """A turn-grammar violation; ``index`` is the offending message (-1: the list)."""

    def __init__(self, message: str, index: int = -1) -> None:
        super().__init__(message)
        self.index = index


def check_turn_order(
    messages: list[Message], *, last: Literal["user", "assistant"]
) -> list[Message]:
    """Enforce the turn grammar shared by dialogues and preference prompts.

    At most one system message, and only first; then turns start with user and
    alternate user -> assistant. An assistant turn with ``tool_calls`` is
    followed by one or more ``tool`` results and then the assistant again,
    the OpenAI tool-calling shape.
    """
    if not messages:
        raise TurnOrderError("no messages")
    expected = {"user"}
    start = 1 if messages[0].role == "system" else 0
    if start == len(messages):
        raise TurnOrderError("only a system message")
    for index, message in enumerate(messages[start:], start):
        if message.role == "system":
            raise TurnOrderError("system message allowed only first", index)
        if message.role not in expected:
            want = " or ".join(sorted(expected))
            raise TurnOrderError(f"expected {want}, got {message.role}", index)
        if message.role == "user":
            expected = {"assistant"}
        elif message.role == "assistant":
            expected = {"tool"} if message.tool_calls else {"user"}
        else:  # tool result: more results or the assistant's answer
            expected = {"tool", "assistant"}
    final = messages[-1]
    if final.role != last or (last == "assistant" and final.tool_calls):
        raise TurnOrderError(f"must end with a {last} message, ends with {final.role}", len(messages) - 1)
    return messages


class Dialogue(Record):
    """A supervised multi-turn conversation (SFT)."""

    kind: ClassVar[str] = "dialogue"

    messages: list[Message]
    tools: OptionalText = Field(default=None, description="JSON text of the tool schemas offered")

    @field_validator("messages")
    @classmethod
    def _order(cls, messages: list[Message]) -> list[Message]:
        return check_turn_order(messages, last="assistant")

    @property
    def system(self) -> str | None:
        """The system prompt, if the dialogue has one."""
        return self.messages[0].content if self.messages[0].role == "system" else None


class QA(Record):
    """A single question and answer, optionally under a system prompt."""

    kind: ClassVar[str] = "qa"

    question: Text
    answer: Text
    system: OptionalText = None

    @field_validator("question", "answer")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is blank")
        return value

    def to_dialogue(self) -> Dialogue:
        """The lossless two- or three-message form."""
        messages = [Message(role="system", content=self.system)] if self.system else []
        messages += [
            Message(role="user", content=self.question),
            Message(role="assistant", content=self.answer),
        ]
        return Dialogue(messages=messages, meta=self.meta)


class Preference(Record):
    """A prompt with a preferred and a dispreferred assistant reply (RM, DPO)."""

    kind: ClassVar[str] = "preference"

    prompt: list[Message]
    chosen: Message
    rejected: Message

    @field_validator("prompt")
    @classmethod
    def _prompt_order(cls, prompt: list[Message]) -> list[Message]:
        return check_turn_order(prompt, last="user")

    @field_validator("chosen", "rejected")
    @classmethod
    def _assistant(cls, message: Message, info: ValidationInfo) -> Message:
        if message.role != "assistant":
            raise ValueError(f"must be an assistant message, got {message.role}")
        chosen = info.data.get("chosen")
        if info.field_name == "rejected" and chosen is not None:
            if normalize_space(chosen.content) == normalize_space(message.content):
                raise ValueError("identical to chosen")
        return message


class ScoredResponse(BaseModel):
    """One candidate response and its numeric score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    response: Text
    score: float

    @field_validator("score", mode="before")
    @classmethod
    def _numeric(cls, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {json_type_name(value)}")
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return float(value)


class Scored(Record):
    """A prompt with several scored responses (reward data)."""

    kind: ClassVar[str] = "scored"

    prompt: list[Message]
    responses: list[ScoredResponse]

    @field_validator("prompt")
    @classmethod
    def _prompt_order(cls, prompt: list[Message]) -> list[Message]:
        return check_turn_order(prompt, last="user")

    @field_validator("responses")
    @classmethod
    def _at_least_two(cls, responses: list[ScoredResponse]) -> list[ScoredResponse]:
        if len(responses) < 2:
            raise ValueError(f"needs at least two responses, has {len(responses)}")
        return responses

    def to_preferences(self, min_margin: float = 0.0) -> list[Preference]:
        """Every pair whose scores differ by more than ``min_margin``, higher score chosen."""
        pairs = []
        for i, first in enumerate(self.responses):
            for second in self.responses[i + 1 :]:
                if abs(first.score - second.score) <= min_margin:
                    continue
                high, low = (first, second) if first.score > second.score else (second, first)
                if normalize_space(high.response) == normalize_space(low.response):
                    continue
                pairs.append(
                    Preference(
                        prompt=self.prompt,
                        chosen=Message(role="assistant", content=high.response),
                        rejected=Message(role="assistant", content=low.response),
                        meta={**self.meta, "margin": high.score - low.score},
                    )
                )
        return pairs


class Document(Record):
    """A raw corpus document, for cleaning and deduplication."""

    kind: ClassVar[str] = "document"

    text: Text

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is blank")
        return value


class Identity(Record):
    """Who the model is: drives identity synthesis and the identity probe."""

    kind: ClassVar[str] = "identity"

    name: Text
    author: Text
    name_en: OptionalText = None
    author_en: OptionalText = None
    description: OptionalText = None
    capabilities: list[Text] = Field(default_factory=list)
    limitations: list[Text] = Field(default_factory=list)

    @field_validator("name", "author")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is blank")
        return value


#: Every record kind by its name, as ``--kind`` and ``schema export`` name them.
KINDS: dict[str, type[Record]] = {
    model.kind: model for model in (Dialogue, QA, Preference, Scored, Document, Identity)
}
