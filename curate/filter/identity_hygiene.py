"""Identity hygiene: find assistant turns that claim to be another assistant.

General SFT data is full of "I am ChatGPT, a model trained by OpenAI" and
"我是通义千问"; mixed into an identity dataset, it teaches the model to
contradict the identity being taught. Only *claims* count: a first-person
frame ("I am", "I was developed by", "我是", "由…开发的我") around a
competitor's name or maker. "GPT-4 was released by OpenAI in 2023" in a
general-knowledge answer is not a claim and is kept.

Competitors come from ``prompts/competitors.yaml``; any whose name or maker
is part of the identity being taught (a team fine-tuning at Meta, say) is left
out, so the model's own name never counts against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

from thresher.prompts.competitors import Competitor, load_competitors
from thresher.curate.text.identity import EN_NEGATION, ZH_NEGATION


@dataclass(frozen=True, slots=True)
class Claim:
    """One identity claim: which competitor and the words that made it."""

    competitor: str
    text: str


def _alternation(terms: tuple[str, ...]) -> str:
    """Terms longest first; ASCII terms as whole words so "Meta" does not match "metabolism"."""
    parts = []
    for term in sorted(set(terms), key=len, reverse=True):
        escaped = regex.escape(term)
        parts.append(rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])" if term.isascii() else escaped)
    return "(?:" + "|".join(parts) + ")"


_I = r"(?:I\s+am|I'm|I’m|I\s+was|I've\s+been|I’ve\s+been|I\s+have\s+been)"
_BUILT = r"(?:developed|created|trained|built|made|designed|programmed|owned|powered|released|brought\s+to\s+you)"
_ZH_BUILT = r"(?:开发|研发|训练|打造|创建|创造|推出|设计|发布|构建|制造)"


def _claim_pattern(names: str, makers: str) -> regex.Pattern[str]:
    """First-person claims of a name or a maker, English and Chinese."""
    english = [
        rf"\b(?:{_I}|my\s+name\s+is|call\s+me|this\s+is)\s+(?:(?:an?|the|your)\s+)?"
        rf"(?:(?:AI|large|language|model|assistant|chatbot|virtual|helpful|called|named)\s+){{0,4}}{names}",
        rf"\b{_I}\s+(?:[\w-]+\s+){{0,6}}?{_BUILT}\s+(?:\w+\s+){{0,2}}?by\s+(?:the\s+)?(?:team\s+at\s+)?{makers}",
        rf"\b{makers}(?:'s|’s)?\s+(?:team\s+)?(?:developed|created|trained|built|made|designed)\s+me\b",
        rf"\bas\s+(?:an?\s+)?(?:AI\s+)?(?:language\s+model|assistant|model|chatbot)?\s*{_BUILT}\s+by\s+{makers}",
        rf"\bas\s+{names}\s*,",
        rf"\bmy\s+(?:creators?|developers?|makers?|maker)\s+(?:is|are|was|were)\s+{makers}",
    ]
    chinese = [
        rf"我(?:是|叫|的名字(?:是|叫))\s*(?:一个|一款|一位|名叫|名为)?(?:[^，。！？,.!?\n]{{0,16}}的)?\s*{names}",
        rf"我(?:是)?(?:由|被)\s*{makers}(?:公司|团队|的团队)?\s*{_ZH_BUILT}",
        rf"我是\s*{makers}(?:公司|团队)?\s*{_ZH_BUILT}的",
        rf"{makers}(?:公司|团队)?\s*{_ZH_BUILT}了我",
        rf"作为\s*(?:一个|一款)?\s*(?:由\s*{makers}\s*{_ZH_BUILT}的\s*)?{names}",
        rf"作为\s*(?:一个|一款)?\s*由\s*{makers}",
        rf"我的(?:开发者|创造者|作者|制造者|研发者|创建者|开发团队)是\s*{makers}",
    ]
    return regex.compile("|".join(f"(?:{p})" for p in english + chinese), regex.IGNORECASE)


class IdentityHygiene:
    """Finds competitor identity claims in assistant text, for one identity being taught."""

    def __init__(self, name: str, author: str, competitors: list[Competitor] | None = None) -> None:
        own = f"{name}\n{author}".lower()
        self.competitors = [
            c for c in (competitors if competitors is not None else load_competitors())
            if not any(term.lower() in own for term in c.terms)
        ]
        self._patterns = {
            c.key: _claim_pattern(_alternation(c.names or c.makers), _alternation(c.makers or c.names))
            for c in self.competitors
        }
        self._lowered = {c.key: tuple(t.lower() for t in c.terms) for c in self.competitors}

    def claims(self, text: str) -> list[Claim]:
        """Every competitor that ``text`` claims to be (at most one claim each)."""
        lowered = text.lower()
        found = []
        for competitor in self.competitors:
            if not any(term in lowered for term in self._lowered[competitor.key]):
                continue  # cheap test first: most text names no competitor at all
            for match in self._patterns[competitor.key].finditer(text):
                if not _negated(text, match.start(), match.end()):
                    found.append(Claim(competitor.key, match.group(0)))
                    break
        return found


def _negated(text: str, start: int, end: int) -> bool:
    """A denial ("I was not developed by OpenAI", "我不是通义千问") is the opposite of a claim."""
    return bool(EN_NEGATION.search(text, max(0, start - 12), end) or ZH_NEGATION.search(text, max(0, start - 4), end))

