"""Loaders for the prompt templates and question banks under ``prompts/``.

Templates are LangGPT-style Markdown (Role, Profile, Skills, Rules, Workflow,
Initialization) with ``{{variable}}`` slots; ``render`` fills them and refuses
to leave one empty, because a prompt with a literal ``{{name}}`` in it
silently teaches the model the wrong thing.

The identity question banks (``identity/questions.<lang>.jsonl``) feed
synthesis; the held-out ``identity/eval_questions.jsonl`` and
``identity/general_prompts.jsonl`` feed evaluation and never overlap the bank
(a test checks this), so an identity score measures generalisation, not recall.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from thresher.prompts import read_text

#: Languages with a question bank.
LANGS: tuple[str, ...] = ("zh", "en")

#: Question categories, shared by the synthesis bank, the eval set and the answer checks.
CATEGORIES: tuple[str, ...] = (
    "greeting", "who", "name", "author", "competitor", "capability", "limitation", "knowledge", "casual",
)

_SLOT = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Template:
    """A prompt file: its name (path under ``prompts/``), text and a short content hash for provenance."""

    name: str
    text: str

    @property
    def hash(self) -> str:
        return hashlib.blake2b(self.text.encode(), digest_size=6).hexdigest()

    def render(self, **variables: Any) -> str:
        return render(self.text, **variables)


def template(name: str) -> Template:
    """The packaged template ``name``, e.g. ``identity/system.zh.md``."""
    return Template(name, read_text(name))


def render(source: str, /, **variables: Any) -> str:
    """Fill every ``{{slot}}`` of ``source``; a slot without a value is an error, not a blank."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in variables or variables[key] is None:
            raise KeyError(f"template slot {{{{{key}}}}} has no value")
        return str(variables[key])

    return _SLOT.sub(fill, source)


def _jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_text(name).splitlines() if line.strip()]


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"no question bank for language {lang!r}; have {', '.join(LANGS)}")


@lru_cache(maxsize=None)
def identity_questions(lang: str) -> tuple[dict[str, str], ...]:
    """The synthesis bank: ``{"category", "question"[, "competitor"]}`` rows."""
    _check_lang(lang)
    return tuple(_jsonl(f"identity/questions.{lang}.jsonl"))


@lru_cache(maxsize=None)
def identity_answers(lang: str) -> dict[str, tuple[str, ...]]:
    """Offline answer templates by category (slots: name, author, competitor, capabilities, ...)."""
    _check_lang(lang)
    answers: dict[str, list[str]] = {}
    for row in _jsonl(f"identity/answers.{lang}.jsonl"):
        answers.setdefault(row["category"], []).append(row["answer"])
    return {category: tuple(texts) for category, texts in answers.items()}


def identity_defaults(lang: str) -> dict[str, Any]:
    """Description, capabilities and limitations to use when the profile gives none in ``lang``."""
    _check_lang(lang)
    return json.loads(read_text("identity/defaults.json"))[lang]


@lru_cache(maxsize=None)
def identity_reasks(lang: str) -> dict[str, str]:
    """Follow-up texts that tell a model which identity rule its answer broke, by rule, in ``lang``."""
    _check_lang(lang)
    return json.loads(read_text("identity/reasks.json"))[lang]


def eval_questions(lang: str | None = None) -> list[dict[str, str]]:
    """Held-out identity probes ``{"lang", "category", "question"[, "competitor"]}``, disjoint from the bank."""
    rows = _jsonl("identity/eval_questions.jsonl")
    return [row for row in rows if lang is None or row["lang"] == lang]


def general_prompts(lang: str | None = None) -> list[dict[str, str]]:
    """Ordinary non-identity prompts ``{"lang", "prompt"}``: a model must answer these without naming itself."""
    rows = _jsonl("identity/general_prompts.jsonl")
    return [row for row in rows if lang is None or row["lang"] == lang]


def general_heldout(lang: str | None = None) -> list[dict[str, str]]:
    """The held-out general set ``{"lang", "category", "prompt", "reference"}`` (see ``general/README.md``)."""
    rows = _jsonl("general/heldout.jsonl")
    return [row for row in rows if lang is None or row["lang"] == lang]
