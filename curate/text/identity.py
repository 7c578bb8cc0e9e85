"""Does an answer hold the model's identity? Rules shared by synthesis and evaluation.

``thresher synth identity`` drops synthesized answers that fail these checks;
the identity probe scores a fine-tuned model's answers with the same function,
so "what we trained on" and "what we test for" can never drift apart.

``check_answer(category, answer, identity, lang)`` applies, by question category:

* every answer: not blank, no unreplaced placeholder, in the question's
  language, and no claim to be a competitor ("I am ChatGPT", "由OpenAI开发",
  "based on Llama"; for ``general`` prompts only first-person claims, since "ChatGPT
  was developed by OpenAI" answers a question about ChatGPT); a denial ("I am not
  ChatGPT", "我不是通义千问") is fine;
* ``who``, ``name``, ``greeting``, ``casual``, ``author``, ``competitor``: states the name;
* ``author``: also states the author;
* ``competitor``: also denies explicitly;
* ``general`` (a non-identity prompt): must *not* name itself or its author, which catches
  the "parrot" failure where a model answers everything with its name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from thresher.curate.text.claims import EN_NEGATION, ZH_NEGATION, ClaimMatcher
from thresher.curate.text.scripts import UNDECIDED, script_language
from thresher.schemas import Identity, find_placeholder

#: Categories whose answer must state the model's name.
NAME_REQUIRED = frozenset({"who", "name", "greeting", "casual", "author", "competitor"})
#: Categories whose answer must state the author.
AUTHOR_REQUIRED = frozenset({"author"})
#: The share of an answer's letter units its language must hold: a clear majority (3 in 5), so a
#: half-Chinese, half-English answer is in neither language, while an English answer quoting a
#: Chinese word or two ("'thank you' is 谢谢") is still English.
ANSWER_MIN_SHARE = 0.6


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


@lru_cache(maxsize=16)
def _matcher(own: tuple[str, ...], first_person_only: bool) -> ClaimMatcher:
    return ClaimMatcher(own, first_person_only=first_person_only)


def competitor_claim(text: str, identity: Identity, first_person_only: bool = False) -> str | None:
    """The competitor spelling the answer first claims to be, be made by or be based on; None if none.

    Answers about the model itself count unframed claims too ("由OpenAI开发的助手");
    ``first_person_only`` is for answers to general prompts, where "ChatGPT was
    developed by OpenAI" is knowledge, not a claim.
    """
    claims = _matcher(tuple(_names(identity) + _authors(identity)), first_person_only).claims(text)
    return claims[0].term if claims else None


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
    claim = competitor_claim(answer, identity, first_person_only=category == "general")
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
