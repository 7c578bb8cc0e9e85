"""Meaning-preserving rewrites of instructions, deduplicated as they arrive.

Used twice: ``thresher synth paraphrase`` (prompt-template augmentation of a
dataset, the "中译英 / 翻译中文为英文" diversity trick) and the question
expansion of ``thresher synth identity``. Both go through ``paraphrase_job``,
so the deduplication below has exactly one call site.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from thresher.prompts.banks import template
from thresher.curate.text.scripts import script_language, zh_or_en
from thresher.curate.synth.client import LLMClient
from thresher.curate.synth.wire import Check, GenerationFailure, Request
from thresher.curate.synth.jobs import Job

PARAPHRASE_TEMPLATE = "synth/paraphrase.md"
_LANGUAGE_NAMES = {"zh": "Chinese (中文)", "en": "English"}


class Paraphrases(BaseModel):
    """The structured reply: the rewrites of one instruction."""

    paraphrases: list[str] = Field(description="meaning-preserving rewrites, each different from the original")


#: Near-duplicate settings for questions: short texts compare best on word / character bigrams.
QUESTION_THRESHOLD = 0.8
QUESTION_NGRAM = 2


def dedup_questions(candidates: list[str], seen: list[str]) -> list[str]:
    """The candidates that near-duplicate neither each other nor any question in ``seen``.

    The survivors are appended to ``seen``. Exact (after normalisation) and
    near duplicates (MinHash LSH, verified Jaccard >= ``QUESTION_THRESHOLD``)
    both count, via ``thresher.curate.dedup.clusters.duplicate_of``.
    """
    from thresher.curate.dedup.clusters import duplicate_of

    candidates = [text.strip() for text in candidates if text.strip()]
    if not candidates:
        return []
    verdict = duplicate_of(seen + candidates, threshold=QUESTION_THRESHOLD, ngram=QUESTION_NGRAM)
    fresh = [text for text, survivor in zip(candidates, verdict[len(seen):]) if survivor is None]
    seen.extend(fresh)
    return fresh


def paraphrase_request(text: str, k: int, temperature: float, max_tokens: int | None) -> Request:
    """The request for ``k`` rewrites of ``text`` in its own language."""
    lang = zh_or_en(text)
    prompt = template(PARAPHRASE_TEMPLATE).render(k=k, text=text, language=_LANGUAGE_NAMES[lang])
    return Request.chat([("user", prompt)], schema=Paraphrases, temperature=temperature, max_tokens=max_tokens)


def language_check(text: str, k: int) -> Check:
    """Re-ask a reply none of whose rewrites is in ``text``'s language (an English rewrite of a
    Chinese question would otherwise be kept as a question and fail every answer later)."""
    lang = zh_or_en(text)

    def check(value: Paraphrases) -> None:
        if not any(script_language(rewrite).lang == lang for rewrite in value.paraphrases[:k]):
            name = _LANGUAGE_NAMES[lang]
            raise GenerationFailure(
                "wrong_language", f"no rewrite is in {name}", reask=f"The rewrites are not in {name}, the language of "
                f"the instruction. Write the {k} rewrites again, every one in {name}, as JSON.")

    return check


def paraphrase_job(
    client: LLMClient,
    text: str,
    k: int,
    seen: list[str],
    source: dict[str, Any],
    to_records: Callable[[list[str]], list[dict[str, Any]]],
    dropped: list[int],
    temperature: float = 0.9,
    max_tokens: int | None = None,
) -> Job:
    """A job that asks for ``k`` rewrites of ``text``, drops repeats and rewrites in another language,
    and builds records from the rest.

    ``dropped`` is a one-element counter of rewrites removed. A job left with no
    record at all fails as ``duplicate``: the rejects file is its trace, so a
    rerun does not ask again.
    """
    request = paraphrase_request(text, k, temperature, max_tokens)
    tmpl = template(PARAPHRASE_TEMPLATE)
    lang, check = zh_or_en(text), language_check(text, k)

    async def run(client: LLMClient) -> list[dict[str, Any]]:
        reply = await client.complete(request, check)
        candidates = reply.value.paraphrases[:k]
        fresh = dedup_questions([c for c in candidates if script_language(c).lang == lang], seen)
        dropped[0] += len(candidates) - len(fresh)
        records = to_records(fresh)
        if not records:
            raise GenerationFailure("duplicate", "every rewrite repeats a known question", reply.text)
        info = {"template": tmpl.name, "template_hash": tmpl.hash, "temperature": temperature}
        return [{**r, "meta": {**r.get("meta", {}), **info}} for r in records]

    return Job(client.key(request), source, run)
