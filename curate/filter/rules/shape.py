"""Rules on the shape of a text: length, character-class shares, markup lines, Gopher's word rules."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import regex
from pydantic import model_validator

from thresher.curate.filter.rules.base import Bounds, Field, Rule, View, over
from thresher.curate.text import measures as ts
from thresher.curate.text.fields import Texts


class Length(Rule):
    """Characters (not counting surrounding whitespace) per field, within bounds."""

    name: ClassVar[str] = "length"
    bounds: dict[Field, Bounds]

    @model_validator(mode="before")
    @classmethod
    def _fields_from_bounds(cls, data: Any) -> Any:
        """The bounds name the fields; ``fields`` is not written in the YAML."""
        if isinstance(data, dict) and isinstance(data.get("bounds"), dict) and "fields" not in data:
            data = {**data, "fields": list(data["bounds"])}
        return data

    def measure(self, view: View, texts: Texts) -> Any:
        return len(view.text.strip())

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        bound = self.bounds[field]  # type: ignore[index]
        if value < bound.min:
            return {"value": value, "min": bound.min}
        return {"value": value, "max": bound.max} if value > bound.max else None


class RatioRule(Rule):
    """A share of characters with an upper bound, on texts of at least ``min_chars``."""

    prose_only: ClassVar[bool] = True

    pattern: ClassVar[regex.Pattern[str]]
    min_chars: int
    max: float

    def measure(self, view: View, texts: Texts) -> Any:
        if view.non_space < self.min_chars:
            return None
        return round(self._ratio(view), 4)

    def _ratio(self, view: View) -> float:
        return ts.count(self.pattern, view.text) / view.non_space

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        return over(value, self.max)


class SymbolRatio(RatioRule):
    """Symbols (Unicode category S: math, currency, emoji, box drawing) and ``#`` per non-space character."""

    name: ClassVar[str] = "symbol_ratio"
    pattern: ClassVar[regex.Pattern[str]] = ts.SYMBOL_RE


class NonTextRatio(RatioRule):
    """Characters that are not letters, marks or digits (punctuation, symbols, others) per non-space character."""

    name: ClassVar[str] = "non_text_ratio"
    pattern: ClassVar[regex.Pattern[str]] = ts.TEXT_CHAR_RE

    def _ratio(self, view: View) -> float:
        return 1.0 - super()._ratio(view)


class UrlMarkupLines(Rule):
    """Share of lines that are mostly URLs, HTML/XML tags, entities or BBCode.

    Skipped by default when the prompt asks for markup (``unless_prompt_matches``):
    an HTML table is junk in a scraped page but the right answer to "make an
    HTML table".
    """

    prose_only: ClassVar[bool] = True

    name: ClassVar[str] = "url_markup_lines"
    min_lines: int
    max: float

    def measure(self, view: View, texts: Texts) -> Any:
        share, count = ts.url_markup_lines(view.text)
        return round(share, 4) if count >= self.min_lines else None

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        return over(value, self.max)


class WordRule(Rule):
    """A Gopher word rule: only on space-delimited text with at least ``min_words`` words."""

    prose_only: ClassVar[bool] = True

    min_words: int

    def measure(self, view: View, texts: Texts) -> Any:
        if not view.spaced:
            return None
        tokens = view.words
        if len(tokens) < self.min_words:
            return None
        return round(self._value(tokens), 4)

    @abstractmethod
    def _value(self, tokens: list[str]) -> float:
        """The rule's measure of a text's words."""


class MeanWordLength(WordRule):
    """Mean word length in characters, within bounds (catches hashes, base64, letter spacing)."""

    name: ClassVar[str] = "mean_word_length"
    min: float
    max: float

    def _value(self, tokens: list[str]) -> float:
        return sum(map(len, tokens)) / len(tokens)

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        if value < self.min:
            return {"value": value, "min": self.min}
        return over(value, self.max)


class StopWords(WordRule):
    """At least ``min`` occurrences of common function words: real prose has them, keyword lists do not."""

    name: ClassVar[str] = "stop_words"
    words: list[str]
    min: int

    def _value(self, tokens: list[str]) -> float:
        stop = frozenset(self.words)
        return sum(1 for t in tokens if t.lower() in stop)

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        return {"value": value, "min": self.min} if value < self.min else None


class AlphaWords(WordRule):
    """Share of words containing a letter (Gopher: 80%); catches number dumps and symbol soup."""

    name: ClassVar[str] = "alpha_words"
    min: float

    def _value(self, tokens: list[str]) -> float:
        return ts.alpha_tokens(tokens) / len(tokens)

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        return {"value": value, "min": self.min} if value < self.min else None
