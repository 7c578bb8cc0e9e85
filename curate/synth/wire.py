"""What goes to an OpenAI-compatible server and what comes back: requests, replies, usage, failures.

A ``Request`` is hashed by content (model, messages, parameters, schema): that
key is how a rerun knows a request already finished. Replies are parsed and
validated here (``parse_reply``), and every text that may hold the API key
passes a ``Redactor`` before anyone prints or stores it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError


class GenerationFailure(Exception):
    """One request failed for good; ``reason`` is machine-readable, ``raw`` the last reply.

    ``reask`` is the follow-up message that tells the model what to fix, in the
    conversation's language (a check sets it); without one the client words
    its own from ``message``.
    """

    def __init__(self, reason: str, message: str, raw: str | None = None, reask: str | None = None, **detail: Any) -> None:
        super().__init__(message)
        self.reason, self.message, self.raw, self.reask, self.detail = reason, message, raw, reask, detail


#: A caller's test of a parsed reply: raises ``GenerationFailure`` saying what to fix, or returns None.
Check = Callable[[Any], None]


class Redactor:
    """Removes the API key from any text before it is shown or stored.

    Not only the exact key: any run of ``MIN_PART`` or more characters that
    appears in the key is redacted, so a reply echoing the key without its
    ``sk-`` prefix, or cut in half, leaks nothing either. Each ``MIN_PART``-long
    piece of the key is searched for (``str.find`` runs in C), and overlapping
    hits merge into one ``[redacted]``.
    """

    MIN_PART = 8

    def __init__(self, secret: str | None) -> None:
        self.secret = secret or ""
        n = self.MIN_PART
        self._parts = {self.secret[i : i + n] for i in range(len(self.secret) - n + 1)} or {self.secret}

    def __call__(self, text: str | None) -> str | None:
        if text is None or not self.secret:
            return text
        hits = []
        for part in self._parts:
            start = text.find(part)
            while start != -1:
                hits.append((start, start + len(part)))
                start = text.find(part, start + 1)
        if not hits:
            return text
        pieces, last = [], 0
        for start, end in _merged(sorted(hits)):
            pieces += [text[last:start], "[redacted]"]
            last = end
        return "".join(pieces) + text[last:]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, overlapping or touching spans merged into one."""
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def public_url(url: str | None) -> str | None:
    """``url`` without user info or query string, the parts that can hold credentials."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Request:
    """One chat completion to make: the messages, the expected schema and the sampling parameters."""

    messages: tuple[tuple[str, str], ...]
    schema: type[BaseModel] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    model: str | None = None  # overrides the client's model (a judge model, say)

    @classmethod
    def chat(cls, messages: Sequence[tuple[str, str]], **params: Any) -> Request:
        """A request from (role, content) pairs."""
        return cls(tuple((role, content) for role, content in messages), **params)

    def key(self, model: str) -> str:
        """The content hash that identifies this request for the cache and for resuming."""
        payload = {
            "model": self.model or model,
            "messages": self.messages,
            "schema": self.schema.model_json_schema() if self.schema else None,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        text = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


@dataclass
class Usage:
    """Token counts as the server reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def of(cls, usage: Any) -> Usage:
        """From the ``usage`` object of a reply (servers may omit it or its fields)."""
        if not isinstance(usage, dict):
            return cls()
        return cls(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass
class Reply:
    """A validated reply: ``value`` is the schema instance (or the text), ``cached`` if replayed."""

    text: str
    value: Any
    cached: bool = False
    attempts: int = 0


def schema_instructions(schema: type[BaseModel]) -> str:
    """The prompt text that carries the schema when the server cannot enforce it."""
    return (
        "Reply with one JSON object only, no prose and no code fences. "
        "It must conform to this JSON Schema:\n" + json.dumps(schema.model_json_schema(), ensure_ascii=False)
    )


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def parse_reply(text: str, schema: type[BaseModel] | None) -> Any:
    """The validated value of ``text``; raises ``GenerationFailure`` (invalid_json / schema)."""
    if schema is None:
        return text.strip()
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:  # servers in prompt mode like to wrap JSON in a code fence
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise GenerationFailure("invalid_json", f"reply is not valid JSON: {exc}", text) from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise GenerationFailure("schema", f"reply does not match the schema: {problems}", text) from None
