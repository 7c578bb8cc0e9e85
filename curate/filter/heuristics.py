"""Heuristic quality rules for Chinese and English records, configured in YAML.

The shipped defaults live in ``prompts/filter_rules.yaml`` (one documented
entry per rule); a user's ``--rules FILE.yaml`` is merged over them key by key,
so ``symbol_ratio: {max: 0.5}`` changes one threshold and ``refusal:
{enabled: false}`` turns one rule off. Every rule is a Pydantic model, so a
misspelt key or a wrong type is a clear error naming the file and the key.

A rule measures each of its ``fields`` and fails when a measure is out of
bounds; the measure goes into the record's scores either way, and a failure
carries the measured value and the threshold it broke, so every removal can be
explained.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import regex
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from thresher.schemas import find_placeholder, normalize_space
from thresher.curate.text import measures as ts
from thresher.curate.errors import InputError
from thresher.curate.text.fields import Texts

Field = Literal["prompt", "response", "system", "text"]
DEFAULTS_RESOURCE = "filter_rules.yaml"


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


class Views:
    """A record's fields as the rules read them: whole, or as prose (code blocks removed)."""

    def __init__(self, texts: Texts) -> None:
        self.texts = texts
        self._cache: dict[tuple[str, bool], View] = {}

    def get(self, field: str, prose: bool = False) -> View:
        key = (field, prose)
        if key not in self._cache:
            text = self.texts.get(field)
            self._cache[key] = View(ts.prose(text) if prose else text)
        return self._cache[key]


@dataclass(frozen=True, slots=True)
class Finding:
    """A failed rule: its name (the removal reason) and what was measured."""

    rule: str
    detail: dict[str, Any]


class Rule(BaseModel):
    """One rule: on/off, which fields it reads, and its thresholds (subclasses)."""

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

    def measure(self, view: View, texts: Texts) -> Any:
        """The value recorded in the scores; None when the rule does not apply to ``view``."""
        raise NotImplementedError

    def failure(self, value: Any) -> dict[str, Any] | None:
        """The detail of a failure for a measured ``value``, or None when it passes."""
        raise NotImplementedError

    def evaluate(self, texts: Texts, views: Views) -> Iterator[tuple[str, Any, dict[str, Any] | None]]:
        """(field, measured value, failure detail or None) for each non-empty field."""
        for field in self.fields:
            view = views.get(field, self.prose_only)
            if not view.text.strip():
                continue
            value = self.measure(view, texts)
            if value is not None:
                yield field, value, self.failure(value)


def _over(value: float, limit: float, key: str = "max") -> dict[str, Any] | None:
    return {"value": round(value, 4), key: limit} if value > limit else None


class Bounds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min: int
    max: int


class Length(Rule):
    """Characters (not counting surrounding whitespace) per field, within bounds."""

    name: ClassVar[str] = "length"
    fields: list[Field] = []  # unused: bounds name their fields
    bounds: dict[Field, Bounds]

    def evaluate(self, texts: Texts, views: Views) -> Iterator[tuple[str, Any, dict[str, Any] | None]]:
        for field, bound in self.bounds.items():
            text = texts.get(field)
            if not text:
                continue
            chars = len(text.strip())
            if chars < bound.min:
                yield field, chars, {"value": chars, "min": bound.min}
            elif chars > bound.max:
                yield field, chars, {"value": chars, "max": bound.max}
            else:
                yield field, chars, None


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

    def failure(self, value: Any) -> dict[str, Any] | None:
        return None if value == 0 else {"value": value}


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

    def failure(self, value: Any) -> dict[str, Any] | None:
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

    def failure(self, value: Any) -> dict[str, Any] | None:
        limits = self.spaced if value["script"] == "spaced" else self.cjk
        for kind, table in (("top", limits.top), ("dup", limits.duplicate)):
            for n, limit in table.items():
                measured = value[f"{kind}_{n}gram"]
                if measured > limit:
                    return {"measure": f"{kind}_{n}gram", "script": value["script"], "value": measured, "max": limit}
        return None


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

    def failure(self, value: Any) -> dict[str, Any] | None:
        return _over(value, self.max)


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

    def failure(self, value: Any) -> dict[str, Any] | None:
        return _over(value, self.max)


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

    def failure(self, value: Any) -> dict[str, Any] | None:
        return {"value": value} if value else None


class ControlChars(Rule):
    """ASCII/Latin-1 control characters other than tab and newlines."""

    name: ClassVar[str] = "control_chars"
    max: int

    def measure(self, view: View, texts: Texts) -> Any:
        return len(ts.CONTROL_RE.findall(view.text))

    def failure(self, value: Any) -> dict[str, Any] | None:
        return _over(value, self.max)


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

    def failure(self, value: Any) -> dict[str, Any] | None:
        return {"value": value} if value else None


class Placeholder(PatternRule):
    """Unreplaced template slots: the data contract's ``{{name}}``/``<NAME>`` set plus ``patterns``."""

    name: ClassVar[str] = "placeholder"

    def measure(self, view: View, texts: Texts) -> Any:
        return find_placeholder(view.text) or super().measure(view, texts)


class Refusal(PatternRule):
    """Boilerplate refusals and "as an AI language model" disclaimers."""

    name: ClassVar[str] = "refusal"


class Truncated(Rule):
    """An answer that stops mid-sentence.

    It fails when the last character is one that cannot end a sentence
    (``,`` ``，`` ``、`` ``:``...), or when a long last line of prose ends in a
    lower-case or CJK letter with no closing punctuation. Lists, headings, code and short
    answers ("Paris") are left alone.
    """

    name: ClassVar[str] = "truncated"
    dangling: str
    min_chars: int
    min_last_line: int

    def measure(self, view: View, texts: Texts) -> Any:
        stripped = view.text.rstrip()
        last = stripped[-1]
        if last in self.dangling:
            return {"ends_with": stripped[-30:]}
        if len(stripped) < self.min_chars or "```" in stripped:
            return 0
        line = stripped.rsplit("\n", 1)[-1].strip()
        prose_end = last.islower() or bool(ts.CJK_RE.match(last))
        if len(line) >= self.min_last_line and prose_end and not _is_list_or_heading(line) and "#" not in line[-30:]:
            return {"ends_with": stripped[-30:]}
        return 0

    def failure(self, value: Any) -> dict[str, Any] | None:
        return {"value": value} if value else None


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

    def failure(self, value: Any) -> dict[str, Any] | None:
        return _over(value, self.max_similarity)


def _trigrams(text: str) -> set[str]:
    flat = normalize_space(text).lower()
    return {flat[i : i + 3] for i in range(max(1, len(flat) - 2))}


def _similarity(a: str, b: str) -> float:
    grams_a, grams_b = _trigrams(a), _trigrams(b)
    return 2 * len(grams_a & grams_b) / (len(grams_a) + len(grams_b))


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

    def _value(self, tokens: list[str]) -> float:
        raise NotImplementedError


class MeanWordLength(WordRule):
    """Mean word length in characters, within bounds (catches hashes, base64, letter spacing)."""

    name: ClassVar[str] = "mean_word_length"
    min: float
    max: float

    def _value(self, tokens: list[str]) -> float:
        return sum(map(len, tokens)) / len(tokens)

    def failure(self, value: Any) -> dict[str, Any] | None:
        if value < self.min:
            return {"value": value, "min": self.min}
        return _over(value, self.max)


class StopWords(WordRule):
    """At least ``min`` occurrences of common function words: real prose has them, keyword lists do not."""

    name: ClassVar[str] = "stop_words"
    words: list[str]
    min: int

    def _value(self, tokens: list[str]) -> float:
        stop = frozenset(self.words)
        return sum(1 for t in tokens if t.lower() in stop)

    def failure(self, value: Any) -> dict[str, Any] | None:
        return {"value": value, "min": self.min} if value < self.min else None


class AlphaWords(WordRule):
    """Share of words containing a letter (Gopher: 80%); catches number dumps and symbol soup."""

    name: ClassVar[str] = "alpha_words"
    min: float

    def _value(self, tokens: list[str]) -> float:
        return ts.alpha_tokens(tokens) / len(tokens)

    def failure(self, value: Any) -> dict[str, Any] | None:
        return {"value": value, "min": self.min} if value < self.min else None


#: Every heuristic rule by its YAML key, in the order they are checked.
RULES: dict[str, type[Rule]] = {
    rule.name: rule
    for rule in (
        Length, EmptyAnswer, ControlChars, Mojibake, Placeholder, Refusal, RepeatsQuestion, Truncated,
        RepeatedLines, RepeatedNgrams, SymbolRatio, NonTextRatio, UrlMarkupLines,
        MeanWordLength, StopWords, AlphaWords,
    )
}


class RuleSet:
    """The enabled rules; ``check`` measures a record's texts against all of them."""

    def __init__(self, rules: list[Rule], config: dict[str, Any]) -> None:
        self.rules = [rule for rule in rules if rule.enabled]
        self.config = config

    def check(self, texts: Texts) -> tuple[dict[str, Any], list[Finding]]:
        """(scores by rule and field, failed rules in check order)."""
        scores: dict[str, Any] = {}
        findings: list[Finding] = []
        views = Views(texts)
        for rule in self.rules:
            if not rule.applies(texts):
                continue
            failed_here = False
            for field, value, failure in rule.evaluate(texts, views):
                scores.setdefault(rule.name, {})[field] = value
                if failure is not None and not failed_here:
                    findings.append(Finding(rule.name, {"field": field, **failure}))
                    failed_here = True
        return scores, findings


def default_config() -> dict[str, Any]:
    """The shipped defaults, as parsed from ``prompts/filter_rules.yaml``."""
    from thresher.prompts import read_text

    return yaml.safe_load(read_text(DEFAULTS_RESOURCE))


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base`` key by key; lists and scalars replace, mappings merge."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_rules(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RuleSet:
    """The default rules, with the YAML file at ``path`` and then ``overrides`` merged over them."""
    config = default_config()
    source = DEFAULTS_RESOURCE
    if path is not None:
        source = str(path)
        try:
            user = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise InputError(source, "no such rules file") from None
        except yaml.YAMLError as exc:
            raise InputError(source, f"not valid YAML: {exc}") from None
        if not isinstance(user, dict):
            raise InputError(source, "a rules file must be a mapping of rule name to settings")
        unknown = sorted(set(user) - set(RULES))
        if unknown:
            raise InputError(source, f"unknown rule {unknown[0]!r}; known rules: {', '.join(RULES)}")
        config = merge(config, user)
    if overrides:
        config = merge(config, overrides)
    rules = []
    for name, model in RULES.items():
        try:
            rules.append(model.model_validate(config[name]))
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in (name, *error["loc"]))
            raise InputError(source, f"{where}: {error['msg']}") from None
    return RuleSet(rules, config)
