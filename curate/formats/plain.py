"""Flat record shapes: ``question``/``answer``, corpus ``text``, scored responses."""

from __future__ import annotations

from typing import Any

from ...schemas import QA, Document, Scored, json_type_name
from ..errors import RecordError
from .base import Mapped, items, need


def parse_qa(row: dict[str, Any]) -> Mapped:
    """``question`` + ``answer`` (+ ``system``) to a QA record."""
    data = {"question": need(row, "question"), "answer": need(row, "answer")}
    if row.get("system"):
        data["system"] = row["system"]
    return Mapped(QA, data)


def parse_document(row: dict[str, Any]) -> Mapped:
    """A corpus document: its ``text``."""
    return Mapped(Document, {"text": need(row, "text")})


#: Reward data names its prompt and its response list in several ways.
PROMPT_KEYS = ("prompt", "input", "instruction", "question")
RESPONSE_KEYS = ("responses", "outputs")


def parse_scored(row: dict[str, Any]) -> Mapped:
    """A prompt with ``[{response, score}]`` candidates to a Scored record."""
    prompt_key = next((k for k in PROMPT_KEYS if k in row), PROMPT_KEYS[0])
    response_key = next((k for k in RESPONSE_KEYS if k in row), RESPONSE_KEYS[0])
    prompt = need(row, prompt_key)
    if isinstance(prompt, list):
        prompt_messages, prompt_sources = prompt, [(f"{prompt_key}[{i}]", "content") for i in range(len(prompt))]
    else:
        prompt_messages, prompt_sources = [{"role": "user", "content": prompt}], [(prompt_key, None)]
    responses = []
    for index, item in enumerate(items(row, response_key)):
        if not isinstance(item, dict):
            raise RecordError(f"{response_key}[{index}]", f"must be an object, got {json_type_name(item)}")
        responses.append({"response": item.get("response"), "score": item.get("score")})
    return Mapped(
        Scored,
        {"prompt": prompt_messages, "responses": responses},
        {"prompt": prompt_sources, "responses": response_key},
    )
