"""What every heuristic rule shares: the text views it reads, its on/off and fields, and its two hooks.

Concrete rules live beside this module, one family per module; ``rules/__init__.py``
lists them in check order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal

import regex
from pydantic import BaseModel, ConfigDict, field_validator

from thresher.curate.text import measures as ts
from thresher.curate.text.fields import Texts

Field = Literal["prompt", "response", "system", "text"]


class View:
    """One field's text with the measures several rules share, each computed once."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def units(self) -> list[str]:
        return ts.units(self.text)

    @cached_property
    def spaced(self) -> bool:
        return ts.is_spaced(self.text, len(self.units))

    @cached_property
    def words(self) -> list[str]:
        return ts.words(self.text)

    @cached_property
    def non_space(self) -> int:
        return ts.non_space(self.text)


#: Statistical rules read at most this many characters of a field: on a 20 MB field the n-gram and
#: word measures would take a minute, and the first 100,000 characters show what the rest is like.
MEASURED_CHARS = 100_000


class Views:
    """A record's fields as the rules read them: whole, or as prose (code blocks removed, at most
    ``MEASURED_CHARS`` characters)."""

    def __init__(self, texts: Texts) -> None:
        self.texts = texts
        self._cache: dict[tuple[str, bool], View] = {}

    def get(self, field: str, prose: bool = False) -> View:
        key = (field, prose)
        if key not in self._cache:
            text = self.texts.get(field)
            self._cache[key] = View(ts.prose(text[:MEASURED_CHARS]) if prose else text)
        return self._cache[key]


@dataclass(frozen=True, slots=True)
class Finding:
    """A failed rule: its name (the removal reason) and what was measured."""

    rule: str
    detail: dict[str, Any]


class Rule(BaseModel, ABC):
    """One rule: on/off, which fields it reads, and its thresholds (subclasses).

    A rule is two hooks: ``measure`` one field's text, and say whether the
    measured value is a ``failure``. ``evaluate`` runs them over the fields, so
    every rule's value lands in the scores and every failure names its field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]
    #: Statistical rules judge prose: they read the text with fenced code blocks removed.
    prose_only: ClassVar[bool] = False

    enabled: bool
    fields: list[Field]
    #: A regular expression; when the prompt matches it, the rule is skipped (the user asked for this).
    unless_prompt_matches: str = ""

    @field_validator("unless_prompt_matches")
    @classmethod
    def _valid_pattern(cls, pattern: str) -> str:
        try:
            regex.compile(pattern)
        except regex.error as exc:
            raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None
        return pattern

    @cached_property
    def _exempt(self) -> regex.Pattern[str] | None:
        return regex.compile(self.unless_prompt_matches, regex.IGNORECASE) if self.unless_prompt_matches else None

    def applies(self, texts: Texts) -> bool:
        """False when the prompt asks for what this rule would object to."""
        return self._exempt is None or not self._exempt.search(texts.prompt)

    @abstractmethod
    def measure(self, view: View, texts: Texts) -> Any:
        """The value recorded in the scores; None when the rule does not apply to ``view``."""

    @abstractmethod
    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        """The detail of a failure for ``value`` measured on ``field``, or None when it passes."""

    def evaluate(self, texts: Texts, views: Views) -> Iterator[tuple[str, Any, dict[str, Any] | None]]:
        """(field, measured value, failure detail or None) for each non-empty field."""
        for field in self.fields:
            view = views.get(field, self.prose_only)
            if not view.text.strip():
                continue
            value = self.measure(view, texts)
            if value is not None:
                yield field, value, self.failure(value, field)


def over(value: float, limit: float, key: str = "max") -> dict[str, Any] | None:
    return {"value": round(value, 4), key: limit} if value > limit else None


class Bounds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min: int
    max: int
