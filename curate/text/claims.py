"""Competitor identity claims: "I am ChatGPT", "我是通义千问", "由OpenAI开发", "based on Llama".

One matcher serves the two places that look for them, with one switch:

* identity hygiene (``thresher filter --identity-name``) judges general SFT
  data, full of "I am ChatGPT, a model trained by OpenAI". There only a
  *first-person* claim counts (``first_person_only=True``): "GPT-4 was
  released by OpenAI in 2023" in a knowledge answer is kept.
* the identity check (synthesis and the identity probe) judges answers to
  "who are you?". There an unframed "由OpenAI开发的AI助手" or "based on
  Llama" describes the speaker too, so ``first_person_only=False`` also
  counts "made by X" / "由X" / "基于X" anywhere in the answer.

Both read the competitor list from ``prompts/competitors.yaml`` and leave out
what belongs to the identity being taught: a competitor whose maker is part
of it (a team at Meta teaching "Llama-Tutor") drops out whole, a product name
that is part of it (an unrelated "Spark Tutor") drops out alone. Both apply
one negation rule: a denial ("I was
not developed by OpenAI", "我并非由阿里开发") is the opposite of a claim, but
a "no" that ends an earlier clause ("No, I am ChatGPT") is not a denial.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import regex

from thresher.prompts.competitors import Competitor, load_competitors

EN_NEGATION = re.compile(r"\b(?:not|no|never|neither|nor|isn't|aren't|wasn't)\b|n't", re.I)
#: 非 but not 非常 ("very"): "我非常确定我是ChatGPT" is a claim.
ZH_NEGATION = re.compile(r"不|没|非(?!常)")
#: How far before a claim a negation may stand: English words are longer than Chinese characters.
_EN_REACH, _ZH_REACH = 12, 4
_CLAUSE_END = re.compile(r"[,.;:!?，。；：！？\n]")


@dataclass(frozen=True, slots=True)
class Claim:
    """One identity claim: the competitor's key, the spelling claimed, the words that made it and where."""

    competitor: str
    term: str
    text: str
    start: int


def _term(term: str) -> str:
    """One spelling; ASCII ones as whole words so "Meta" does not match "metabolism"."""
    escaped = regex.escape(term)
    return rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])" if term.isascii() else escaped


def _alternation(terms: tuple[str, ...]) -> str:
    """Spellings longest first, captured as ``term`` (the report names the spelling claimed)."""
    return "(?P<term>" + "|".join(_term(t) for t in sorted(set(terms), key=len, reverse=True)) + ")"


_I = r"(?:I\s+am|I'm|I’m|I\s+was|I've\s+been|I’ve\s+been|I\s+have\s+been)"
_SPEAKER = rf"(?:{_I}|my\s+name\s+is|call\s+me|this\s+is|you\s+are\s+talking\s+to|you(?:'|’)re\s+talking\s+to)"
#: Words that may stand between "I am" and a name: "I'm actually a version of GPT-4", "I am the AI assistant Claude".
_FILLER = (r"(?:(?:an?|the|your|actually|really|just|basically|indeed|definitely|simply|version|of|AI|large"
           r"|language|model|assistant|chatbot|virtual|helpful|called|named)\s+){0,6}")
_BUILT = r"(?:developed|created|trained|built|made|designed|programmed|owned|powered|released|brought\s+to\s+you)"
_ZH_BUILT = r"(?:开发|研发|训练|打造|创建|创造|推出|设计|发布|构建|制造)"


def _claim_pattern(names: str, makers: str, terms: str, first_person_only: bool) -> regex.Pattern[str]:
    """Claims of a name or a maker, English and Chinese; without ``first_person_only`` also unframed ones."""
    english = [
        rf"\b{_SPEAKER}\s+{_FILLER}{names}",
        rf"\b{_I}\s+(?:[\w-]+\s+){{0,6}}?{_BUILT}\s+(?:\w+\s+){{0,2}}?by\s+(?:the\s+)?(?:team\s+at\s+)?{makers}",
        rf"\b{_I}\s+(?:[\w-]+\s+){{0,6}}?(?:based|built)\s+(?:on|upon)\s+(?:the\s+)?{terms}",
        rf"\b{makers}(?:'s|’s)?\s+(?:team\s+)?(?:developed|created|trained|built|made|designed)\s+me\b",
        rf"\bas\s+(?:an?\s+)?(?:AI\s+)?(?:language\s+model|assistant|model|chatbot)?\s*{_BUILT}\s+by\s+{makers}",
        rf"\bas\s+{names}\s*,",
        rf"\bmy\s+(?:creators?|developers?|makers?|maker)\s+(?:is|are|was|were)\s+{makers}",
    ]
    chinese = [
        rf"我[就其实正确也]{{0,4}}(?:是|叫|的名字(?:是|叫))\s*(?:一个|一款|一位|个|名叫|名为)?"
        rf"(?:[^，。！？,.!?\n]{{0,16}}的)?\s*{names}",
        rf"我(?:是)?(?:由|被)\s*{makers}(?:公司|团队|的团队)?\s*{_ZH_BUILT}",
        rf"我(?:是)?(?:基于|建立在)\s*{terms}",
        rf"我是\s*{makers}(?:公司|团队)?\s*{_ZH_BUILT}的",
        rf"{makers}(?:公司|团队)?\s*{_ZH_BUILT}了我",
        rf"作为\s*(?:一个|一款)?\s*(?:由\s*{makers}\s*{_ZH_BUILT}的\s*)?{names}",
        rf"作为\s*(?:一个|一款)?\s*由\s*{makers}",
        rf"我的(?:开发者|创造者|作者|制造者|研发者|创建者|开发团队)是\s*{makers}",
    ]
    unframed = [] if first_person_only else [
        rf"\b(?:developed|made|created|built|trained|designed|owned|produced|powered)\s+by\s+(?:the\s+)?"
        rf"(?:team\s+at\s+)?{terms}",
        rf"\b(?:based|built)\s+on\s+(?:the\s+)?{terms}",
        rf"(?:由|被|基于)\s*{terms}",
        rf"{terms}\s*(?:开发|训练|研发|打造|推出|出品)的",
    ]
    return regex.compile("|".join(f"(?:{p})" for p in english + chinese + unframed), regex.IGNORECASE)


class ClaimMatcher:
    """Finds competitor identity claims in text, for one identity being taught.

    ``own`` holds the identity's names and authors (any language);
    ``first_person_only`` picks the strict rule of identity hygiene or the
    broader one of the identity check (see the module docstring).
    """

    def __init__(self, own: Iterable[str], competitors: list[Competitor] | None = None, *,
                 first_person_only: bool = True) -> None:
        self.competitors = _others(list(own), competitors if competitors is not None else load_competitors())
        self._patterns = {
            c.key: _claim_pattern(_alternation(c.names or c.makers), _alternation(c.makers or c.names),
                                  _alternation(c.terms), first_person_only)
            for c in self.competitors
        }
        self._lowered = {c.key: tuple(t.lower() for t in c.terms) for c in self.competitors}

    def claims(self, text: str) -> list[Claim]:
        """Every competitor that ``text`` claims to be, be made by or be based on (its first claim each), in order."""
        lowered = text.lower()
        found = []
        for competitor in self.competitors:
            if not any(term in lowered for term in self._lowered[competitor.key]):
                continue  # cheap test first: most text names no competitor at all
            for match in self._patterns[competitor.key].finditer(text):
                if not _negated(text, match.start(), match.end()):
                    found.append(Claim(competitor.key, match.group("term"), match.group(0), match.start()))
                    break
        return sorted(found, key=lambda claim: claim.start)


def _others(own: list[str], competitors: list[Competitor]) -> list[Competitor]:
    """The competitors as seen by the identity ``own``: a competitor whose maker is part of it is its own
    (a team at Meta teaching "Llama-Tutor"), and drops out whole; a product name that is part of it
    ("Spark Tutor" by EduCorp) drops out alone, so "我是讯飞星火" still counts as a claim."""
    own_text = "\n".join(own)

    def taken(term: str) -> bool:
        return bool(regex.search(_term(term), own_text, regex.IGNORECASE))

    others = []
    for competitor in competitors:
        if not any(map(taken, competitor.makers)):
            names = tuple(name for name in competitor.names if not taken(name))
            if names or competitor.makers:
                others.append(Competitor(competitor.key, names, competitor.makers))
    return others


def _negated(text: str, start: int, end: int) -> bool:
    """Whether a negation stands in the claim or just before it, in the same clause."""
    def before(reach: int) -> str:
        window = text[max(0, start - reach):start]
        return window[max((m.end() for m in _CLAUSE_END.finditer(window)), default=0):]

    return bool(EN_NEGATION.search(before(_EN_REACH) + text[start:end]) or ZH_NEGATION.search(before(_ZH_REACH)))
