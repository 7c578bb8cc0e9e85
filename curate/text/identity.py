"""Does an answer hold the model's identity? Rules shared by synthesis and evaluation.

``thresher synth identity`` drops synthesized answers that fail these checks;
the identity probe scores a fine-tuned model's answers with the same function,
so "what we trained on" and "what we test for" can never drift apart.

``check_answer(category, answer, identity, lang)`` applies, by question category:

* every answer: not blank, no unreplaced placeholder, in the question's
  language, and no claim to be a competitor ("I am ChatGPT", "由OpenAI开发",
  "based on Llama"); a denial ("I am not ChatGPT", "我不是通义千问") is fine;
* ``who``, ``name``, ``greeting``, ``casual``, ``author``, ``competitor``: states the name;
* ``author``: also states the author;
* ``competitor``: also denies explicitly;
* ``general`` (a non-identity prompt): must *not* name itself or its author, which catches
  the "parrot" failure where a model answers everything with its name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from thresher.curate.text.scripts import UNDECIDED, script_language
from thresher.prompts.competitors import load_competitors
from thresher.schemas import Identity, find_placeholder

#: Categories whose answer must state the model's name.
NAME_REQUIRED = frozenset({"who", "name", "greeting", "casual", "author", "competitor"})
#: Categories whose answer must state the author.
AUTHOR_REQUIRED = frozenset({"author"})
#: The share of an answer's letter units its language must hold: a clear majority (3 in 5), so a
#: half-Chinese, half-English answer is in neither language, while an English answer quoting a
#: Chinese word or two ("'thank you' is 谢谢") is still English.
ANSWER_MIN_SHARE = 0.6

EN_NEGATION = re.compile(r"\b(?:not|no|never|neither|nor|isn't|aren't|wasn't)\b|n't", re.I)
ZH_NEGATION = re.compile(r"不|非|没|并非|而不是")


@dataclass
class CheckResult:
    """``passed`` and, when it did not, one machine-readable reason per broken rule."""

    passed: bool
    reasons: list[str] = field(default_factory=list)


def _names(identity: Identity) -> list[str]:
    return [n for n in (identity.name, identity.name_en) if n]


def _authors(identity: Identity) -> list[str]:
    return [a for a in (identity.author, identity.author_en) if a]


def _contains(text: str, needles: list[str]) -> bool:
    lowered = text.casefold()
    return any(needle.casefold() in lowered for needle in needles)


def answer_language(text: str, ignore: Sequence[str] = ()) -> str | None:
    """The language an answer is written in, or None when no language holds ``ANSWER_MIN_SHARE``.

    ``ignore`` removes words first: the model's own names are written in either
    script ("I am 小州") and say nothing about the answer's language.
    """
    for word in ignore:
        text = text.replace(word, " ")
    lang = script_language(text, ANSWER_MIN_SHARE).lang
    return None if lang == UNDECIDED else lang


@lru_cache(maxsize=1)
def competitor_terms() -> tuple[str, ...]:
    """Every name and maker in the shipped competitor list (``prompts/competitors.yaml``)."""
    return tuple(term for competitor in load_competitors() for term in competitor.terms)


def _competitor_terms(identity: Identity) -> list[str]:
    """Competitor names, minus any that are part of this identity ("阿里" when the author is 阿里巴巴)."""
    own = " ".join(_names(identity) + _authors(identity)).casefold()
    return [term for term in competitor_terms() if term.casefold() not in own]


def competitor_claim(text: str, identity: Identity) -> str | None:
    """The competitor the answer claims to be, be made by or be based on; None if it makes no such claim."""
    terms = _competitor_terms(identity)
    if not terms:
        return None
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    # "I am X", "I'm actually a version of X", "my name is X": only filler words may stand between.
    en_self = re.compile(
        rf"\b(?:i am|i'm|i’m|my name is|call me|you are talking to|you're talking to)"
        rf"(?:\s+(?:actually|really|just|basically|indeed|definitely|simply|a|an|the|version|of|called|named))*"
        rf"\s+(?P<who>{alternatives})(?![\w-])",
        re.I,
    )
    # "developed by X", "based on X", "由X开发", "X训练的", "基于X"; no negation just before.
    made_by = re.compile(
        rf"(?P<pre>.{{0,12}}?)(?:\b(?:developed|made|created|built|trained|designed|owned|produced|powered)\s+by"
        rf"|\b(?:based|built)\s+on|由|被|基于)\s*(?:the\s+)?(?:team\s+at\s+)?(?P<who>{alternatives})(?![\w-])",
        re.I,
    )
    made_zh = re.compile(rf"(?P<pre>.{{0,8}}?)(?P<who>{alternatives})\s*(?:开发|训练|研发|打造|推出|出品)的")
    zh_self = re.compile(rf"我[就其实正确也]{{0,4}}是(?:一个|一款|个)?\s*(?P<who>{alternatives})")
    for sentence in re.split(r"(?<=[.!?。！？\n])", text):
        for pattern in (en_self, zh_self):
            match = pattern.search(sentence)
            if match:
                return match.group("who")
        for pattern in (made_by, made_zh):
            for match in pattern.finditer(sentence):
                pre = match.group("pre")
                if not EN_NEGATION.search(pre) and not ZH_NEGATION.search(pre):
                    return match.group("who")
    return None


def denies(text: str, lang: str) -> bool:
    """Whether the answer contains an explicit denial (for competitor questions)."""
    return bool((ZH_NEGATION if lang == "zh" else EN_NEGATION).search(text))


def check_answer(category: str, answer: str, identity: Identity, lang: str) -> CheckResult:
    """Check ``answer`` to a question of ``category`` asked in ``lang`` against ``identity``."""
    reasons: list[str] = []
    if not answer.strip():
        return CheckResult(False, ["blank"])
    if find_placeholder(answer):
        reasons.append("placeholder")
    found = answer_language(answer, ignore=_names(identity) + _authors(identity))
    if found != lang:
        reasons.append(f"wrong_language:{found or 'unknown'}")
    claim = competitor_claim(answer, identity)
    if claim:
        reasons.append(f"claims_competitor:{claim}")
    if category in NAME_REQUIRED and not _contains(answer, _names(identity)):
        reasons.append("missing_name")
    if category in AUTHOR_REQUIRED and not _contains(answer, _authors(identity)):
        reasons.append("missing_author")
    if category == "competitor" and not denies(answer, lang):
        reasons.append("no_denial")
    if category == "general" and _contains(answer, _names(identity) + _authors(identity)):
        reasons.append("names_itself")
    return CheckResult(not reasons, reasons)
