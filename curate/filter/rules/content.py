"""Rules on what a text says: empty answers, broken encodings, placeholders, refusals, cut-off and parroted answers."""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

import regex
from pydantic import field_validator

from thresher.curate.filter.rules.base import Rule, View, over
from thresher.curate.text import measures as ts
from thresher.curate.text.fields import Texts
from thresher.schemas import find_placeholder, normalize_space


class EmptyAnswer(Rule):
    """No letter or digit at all, or only a "no answer" marker such as ``N/A`` or ``<nooutput>``."""

    name: ClassVar[str] = "empty_answer"
    markers: list[str]

    def measure(self, view: View, texts: Texts) -> Any:
        stripped = view.text.strip()
        empty = not ts.TEXT_CHAR_RE.search(stripped) or stripped.lower().strip(" .。!！") in self._markers
        return stripped if empty else 0

    @cached_property
    def _markers(self) -> frozenset[str]:
        return frozenset(m.lower() for m in self.markers)

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        return None if value == 0 else {"value": value}


class Mojibake(Rule):
    """Text decoded with the wrong codec: ftfy's detector plus markers such as U+FFFD and 锟斤拷."""

    name: ClassVar[str] = "mojibake"
    markers: list[str]

    def measure(self, view: View, texts: Texts) -> Any:
        from ftfy.badness import is_bad

        text = view.text
        found = [m for m in self.markers if m in text]
        if found:
            return {"marker": found[0]}
        # Mojibake is made of non-ASCII characters; skip ftfy's scan for pure ASCII text.
        return {"ftfy": True} if not text.isascii() and is_bad(text) else 0

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        return {"value": value} if value else None


class ControlChars(Rule):
    """ASCII/Latin-1 control characters other than tab and newlines."""

    name: ClassVar[str] = "control_chars"
    max: int

    def measure(self, view: View, texts: Texts) -> Any:
        return len(ts.CONTROL_RE.findall(view.text))

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        return over(value, self.max)


class PatternRule(Rule):
    """Fails when one of ``patterns`` (regular expressions) matches; records the match."""

    patterns: list[str]
    case_sensitive: bool = False

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                regex.compile(pattern)
            except regex.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None
        return patterns

    @cached_property
    def _compiled(self) -> regex.Pattern[str] | None:
        if not self.patterns:
            return None
        flags = 0 if self.case_sensitive else regex.IGNORECASE
        return regex.compile("|".join(f"(?:{p})" for p in self.patterns), flags)

    def measure(self, view: View, texts: Texts) -> Any:
        compiled = self._compiled
        match = compiled.search(view.text) if compiled is not None else None
        return match.group(0) if match else 0

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        return {"value": value} if value else None


class Placeholder(PatternRule):
    """Unreplaced template slots: the data contract's ``{{name}}``/``<NAME>`` set, ``patterns``, and
    with ``any_braces`` any ``{{word}}`` in prose ("Welcome to {{product}}").

    Template code is not a slot: ``any_braces`` skips fenced and `inline` code,
    a ``{{word}}`` between tags (``<p>{{ message }}</p>``) and text with
    ``{% %}`` template tags, so a Vue or Jinja answer is kept.
    """

    name: ClassVar[str] = "placeholder"
    any_braces: bool

    def measure(self, view: View, texts: Texts) -> Any:
        found = find_placeholder(view.text) or super().measure(view, texts)
        if found or not self.any_braces or "{{" not in view.text or "{%" in view.text:
            return found
        match = _BRACE_SLOT.search(_INLINE_CODE.sub(" ", ts.prose(view.text)))
        return match.group(0) if match else 0


_BRACE_SLOT = regex.compile(r"(?<!>\s*)\{\{\s*[^\W\d]\w{0,30}\s*\}\}(?!\s*<)")
_INLINE_CODE = regex.compile(r"`[^`\n]*`")


class Refusal(PatternRule):
    """Boilerplate refusals and "as an AI language model" disclaimers."""

    name: ClassVar[str] = "refusal"


class Truncated(Rule):
    """An answer that stops mid-sentence.

    It fails when the last character is one that cannot end a sentence
    (``,`` ``，`` ``、`` ``:``...); when, with no closing punctuation, the last
    word is a function word no sentence ends on (``the``, ``and``, ``because``;
    ``因为``, ``而且``, ``例如``), at any length from ``min_words`` units; or when
    a long last line of prose ends in a lower-case or CJK letter with no
    closing punctuation. Lists, headings, code and short answers ("Paris") are
    left alone.
    """

    name: ClassVar[str] = "truncated"
    dangling: str
    min_chars: int
    min_last_line: int
    function_words: dict[str, list[str]]
    min_words: int

    def measure(self, view: View, texts: Texts) -> Any:
        stripped = view.text.rstrip()
        last = stripped[-1]
        if last in self.dangling:
            return {"ends_with": stripped[-30:]}
        if "```" in stripped:
            return 0
        line = stripped.rsplit("\n", 1)[-1].strip()
        if _is_list_or_heading(line):
            return 0
        word = self._function_word(stripped)
        if word and len(view.units) >= self.min_words:
            return {"ends_with": stripped[-30:], "function_word": word}
        if len(stripped) < self.min_chars:
            return 0
        prose_end = last.islower() or bool(ts.CJK_RE.match(last))
        if len(line) >= self.min_last_line and prose_end and "#" not in line[-30:]:
            return {"ends_with": stripped[-30:]}
        return 0

    @cached_property
    def _english(self) -> frozenset[str]:
        return frozenset(w.lower() for w in self.function_words.get("en", []))

    @cached_property
    def _chinese(self) -> tuple[str, ...]:
        return tuple(self.function_words.get("zh", []))

    def _function_word(self, text: str) -> str | None:
        """The function word ``text`` ends on, with nothing after it; None if it ends otherwise."""
        if ts.CJK_RE.match(text[-1]):
            return next((w for w in self._chinese if text.endswith(w)), None)
        match = _LAST_WORD.search(text[-64:])
        return match.group(1) if match and match.group(1).lower() in self._english else None

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        return {"value": value} if value else None


_LAST_WORD = regex.compile(r"(?:^|[^\w'’-])([A-Za-z]+)$")  # searched in the last 64 characters only
_LIST_RE = regex.compile(r"^(?:[-*•#>|]|\d+[.)、]|[a-zA-Z][.)]|[一二三四五六七八九十]+、)")


def _is_list_or_heading(line: str) -> bool:
    return bool(_LIST_RE.match(line))


class RepeatsQuestion(Rule):
    """An answer that merely repeats the prompt: Dice similarity of character 3-grams.

    Not measured when the lengths alone rule a repeat out (an answer several
    times longer or shorter than the prompt), which keeps it cheap.
    """

    name: ClassVar[str] = "repeats_question"
    max_similarity: float

    def measure(self, view: View, texts: Texts) -> Any:
        if not texts.prompt:
            return None
        prompt, answer = len(texts.prompt), len(view.text)
        if 2 * min(prompt, answer) / (prompt + answer) <= self.max_similarity / 2:
            return None  # lengths too far apart to be a repeat: skip the 3-gram sets
        return round(_similarity(texts.prompt, view.text), 4)

    def failure(self, value: Any, field: str) -> dict[str, Any] | None:
        return over(value, self.max_similarity)


def _trigrams(text: str) -> set[str]:
    flat = normalize_space(text).lower()
    return {flat[i : i + 3] for i in range(max(1, len(flat) - 2))}


def _similarity(a: str, b: str) -> float:
    grams_a, grams_b = _trigrams(a), _trigrams(b)
    return 2 * len(grams_a & grams_b) / (len(grams_a) + len(grams_b))
