"""Rules on repetition: Gopher's duplicate-line shares and n-gram repetition, in words or CJK characters."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from thresher.curate.filter.rules.base import Rule, View
from thresher.curate.text import measures as ts
from thresher.curate.text.fields import Texts


class RepeatedLines(Rule):
    """Gopher's duplicate-line shares, on texts with at least ``min_lines`` lines."""

    prose_only: ClassVar[bool] = True

    name: ClassVar[str] = "repeated_lines"
    min_lines: int
    max_line_fraction: float
    max_char_fraction: float

    def measure(self, view: View, texts: Texts) -> Any:
        lines, chars, count = ts.duplicate_lines(view.text)
        if count < self.min_lines:
            return None
        return {"line_fraction": round(lines, 4), "char_fraction": round(chars, 4)}

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        if value["line_fraction"] > self.max_line_fraction:
            return {"measure": "line_fraction", "value": value["line_fraction"], "max": self.max_line_fraction}
        if value["char_fraction"] > self.max_char_fraction:
            return {"measure": "char_fraction", "value": value["char_fraction"], "max": self.max_char_fraction}
        return None


class NgramLimits(BaseModel):
    """Limits on the most frequent n-gram (``top``) and on repeated n-grams (``duplicate``), by n."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    top: dict[int, float]
    duplicate: dict[int, float]


class RepeatedNgrams(Rule):
    """Gopher's n-gram repetition, in words for spaced text and in characters for CJK text."""

    prose_only: ClassVar[bool] = True

    name: ClassVar[str] = "repeated_ngrams"
    min_units: int
    spaced: NgramLimits
    cjk: NgramLimits

    def measure(self, view: View, texts: Texts) -> Any:
        tokens = view.units
        if len(tokens) < self.min_units:
            return None
        script = "spaced" if view.spaced else "cjk"
        limits = self.spaced if script == "spaced" else self.cjk
        value: dict[str, Any] = {"script": script}
        for n in limits.top:
            value[f"top_{n}gram"] = round(ts.top_ngram_fraction(tokens, n), 4)
        for n in limits.duplicate:
            value[f"dup_{n}gram"] = round(ts.duplicate_ngram_fraction(tokens, n), 4)
        return value

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        limits = self.spaced if value["script"] == "spaced" else self.cjk
        for kind, table in (("top", limits.top), ("dup", limits.duplicate)):
            for n, limit in table.items():
                measured = value[f"{kind}_{n}gram"]
                if measured > limit:
                    return {"measure": f"{kind}_{n}gram", "script": value["script"], "value": measured, "max": limit}
        return None
