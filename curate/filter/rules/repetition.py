"""Rules on repetition: Gopher's duplicate-line and -paragraph shares and n-gram repetition, in words
or CJK characters, with limits scaled for short texts.

Gopher's measures need text to measure: on a reply of a dozen words every
n-gram is unique or nearly so, and "I love you. I love you. I love you." slips
through. Texts under ``min_units`` units are therefore measured with short
n-grams and stricter shares (``short``), and their letters with the share of
the most frequent one, which catches one character looped ("好好好好好好",
"aaaaaaaa") that no word measure can see.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from thresher.curate.filter.rules.base import Rule, View
from thresher.curate.text import measures as ts
from thresher.curate.text.fields import Texts


class RepeatedLines(Rule):
    """Gopher's duplicate-line shares (texts of ``min_lines`` lines) and duplicate-paragraph
    shares (texts of ``min_paragraphs`` paragraphs)."""

    prose_only: ClassVar[bool] = True

    name: ClassVar[str] = "repeated_lines"
    min_lines: int
    max_line_fraction: float
    max_char_fraction: float
    min_paragraphs: int
    max_paragraph_fraction: float
    max_paragraph_char_fraction: float

    def measure(self, view: View, texts: Texts) -> Any:
        value: dict[str, float] = {}
        lines, chars, count = ts.duplicate_lines(view.text)
        if count >= self.min_lines:
            value.update(line_fraction=round(lines, 4), char_fraction=round(chars, 4))
        paragraphs, paragraph_chars, count = ts.duplicate_paragraphs(view.text)
        if count >= self.min_paragraphs:
            value.update(paragraph_fraction=round(paragraphs, 4), paragraph_char_fraction=round(paragraph_chars, 4))
        return value or None

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        for measure, limit in (
            ("line_fraction", self.max_line_fraction), ("char_fraction", self.max_char_fraction),
            ("paragraph_fraction", self.max_paragraph_fraction),
            ("paragraph_char_fraction", self.max_paragraph_char_fraction),
        ):
            if value.get(measure, 0) > limit:
                return {"measure": measure, "value": value[measure], "max": limit}
        return None


class NgramLimits(BaseModel):
    """Limits on the most frequent n-gram (``top``) and on repeated n-grams (``duplicate``), by n."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    top: dict[int, float] = {}
    duplicate: dict[int, float] = {}


class ShortLimits(BaseModel):
    """The limits for texts of ``min_units`` units up to the rule's ``min_units``, and the top-letter share."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_units: int
    spaced: NgramLimits
    cjk: NgramLimits
    min_letters: int
    max_top_char: float


class RepeatedNgrams(Rule):
    """Gopher's n-gram repetition, in words for spaced text and in characters for CJK text;
    short texts get the ``short`` limits (see the module docstring)."""

    prose_only: ClassVar[bool] = True

    name: ClassVar[str] = "repeated_ngrams"
    min_units: int
    spaced: NgramLimits
    cjk: NgramLimits
    short: ShortLimits

    def _limits(self, value: dict[str, Any]) -> NgramLimits:
        table = self.short if value["length"] == "short" else self
        return table.spaced if value["script"] == "spaced" else table.cjk

    def measure(self, view: View, texts: Texts) -> Any:
        tokens = view.units
        value: dict[str, Any] = {"script": "spaced" if view.spaced else "cjk",
                                 "length": "long" if len(tokens) >= self.min_units else "short"}
        if value["length"] == "short":
            share, letters = ts.top_char_fraction(view.text)
            if letters >= self.short.min_letters:
                value["top_char"] = round(share, 4)
            if len(tokens) < self.short.min_units:
                return value if "top_char" in value else None
        limits = self._limits(value)
        for n in limits.top:
            value[f"top_{n}gram"] = round(ts.top_ngram_fraction(tokens, n), 4)
        for n in limits.duplicate:
            value[f"dup_{n}gram"] = round(ts.duplicate_ngram_fraction(tokens, n), 4)
        return value

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        if value.get("top_char", 0) > self.short.max_top_char:
            return {"measure": "top_char", "script": value["script"], "value": value["top_char"],
                    "max": self.short.max_top_char}
        limits = self._limits(value)
        for kind, table in (("top", limits.top), ("dup", limits.duplicate)):
            for n, limit in table.items():
                measured = value.get(f"{kind}_{n}gram")
                if measured is not None and measured > limit:
                    return {"measure": f"{kind}_{n}gram", "script": value["script"], "value": measured, "max": limit}
        return None
