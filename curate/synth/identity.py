"""Identity (self-cognition) records: who the model is, in Chinese and English.

Two backends produce the same QA records:

* offline: the bank's questions paired with the bank's templated answers,
  filled from the ``Identity`` profile. Each round gives every question a
  different answer template, so records stay distinct and every category is
  covered before any question repeats.
* API (``identity_api``): the bank's questions plus LLM paraphrases
  (deduplicated), answered in character under the LangGPT system prompt built
  from the profile (``answer_job``).

Both pass every answer through ``text.identity.check_answer``; through the API
a failing answer is first re-asked with the rule it broke (``identity_check``),
and failures go to the rejects file with their reasons, never to the output.
Languages are balanced: ``count`` is split evenly across ``langs``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from thresher.prompts.banks import (
    Template, identity_answers, identity_defaults, identity_questions, identity_reasks, render, template,
)
from thresher.schemas import QA, Identity
from thresher.curate.text.identity import answer_language, check_answer
from thresher.curate.synth.client import LLMClient
from thresher.curate.synth.wire import Check, GenerationFailure, Request
from thresher.curate.synth.jobs import Job


def split_count(count: int, langs: Sequence[str]) -> dict[str, int]:
    """``count`` records spread evenly over ``langs`` (the first languages take the remainder)."""
    base, extra = divmod(count, len(langs))
    return {lang: base + (i < extra) for i, lang in enumerate(langs)}


def _in_lang(values: list[str], lang: str) -> list[str]:
    return [v for v in values if answer_language(v) == lang]


def _join(items: list[str], lang: str) -> str:
    if lang == "zh":
        return "、".join(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else items[0]


def profile_values(identity: Identity, lang: str) -> dict[str, str]:
    """Template values for ``lang``: English names fall back to the Chinese ones, and profile
    texts not written in ``lang`` fall back to the packaged defaults (so an English answer
    never carries a Chinese description)."""
    defaults = identity_defaults(lang)
    name = (identity.name_en or identity.name) if lang == "en" else identity.name
    author = (identity.author_en or identity.author) if lang == "en" else identity.author
    description = identity.description if identity.description and answer_language(identity.description) == lang else None
    capabilities = _in_lang(list(identity.capabilities), lang) or defaults["capabilities"]
    limitations = _in_lang(list(identity.limitations), lang) or defaults["limitations"]
    return {
        "name": name,
        "author": author,
        "description": description or defaults["description"],
        "capabilities": _join(capabilities, lang),
        "limitations": ("；" if lang == "zh" else "; ").join(limitations),
        "capability_list": "\n".join(f"- {c}" for c in capabilities),
        "limitation_list": "\n".join(f"- {c}" for c in limitations),
    }


def system_template(lang: str) -> Template:
    return template(f"identity/system.{lang}.md")


def system_prompt(identity: Identity, lang: str) -> str:
    """The LangGPT persona prompt for ``lang``, filled from the profile."""
    values = profile_values(identity, lang)
    return system_template(lang).render(**{**values, "capabilities": values["capability_list"], "limitations": values["limitation_list"]})


def _qa(question: str, answer: str, system: str | None, meta: dict[str, Any]) -> dict[str, Any]:
    """A canonical QA record as a dict (validated through the schema first)."""
    record = QA(question=question, answer=answer, system=system)
    return {**record.model_dump(exclude_none=True, exclude={"id"}), "meta": meta}


def offline_records(
    identity: Identity, langs: Sequence[str], count: int, seed: int, system: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """(records, rejected, shortfall by language): ``count`` QA records from the banks, no network."""
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    shortfall: dict[str, int] = {}
    for lang, wanted in split_count(count, langs).items():
        values = profile_values(identity, lang)
        answers = identity_answers(lang)
        bank = template(f"identity/answers.{lang}.jsonl")
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        questions = list(identity_questions(lang))
        rng.shuffle(questions)
        rounds = max(len(a) for a in answers.values())
        made = 0
        seen: set[tuple[str, str]] = set()
        for round_ in range(rounds):
            for index, row in enumerate(questions):
                if made == wanted:
                    break
                options = answers[row["category"]]
                answer_template = options[(index + round_) % len(options)]
                answer = render(answer_template, **values, competitor=row.get("competitor", ""))
                if (row["question"], answer) in seen:
                    continue
                seen.add((row["question"], answer))
                meta = {"backend": "offline", "lang": lang, "category": row["category"], "template": bank.name,
                        "template_hash": bank.hash, "seed": seed, "created": created}
                check = check_answer(row["category"], answer, identity, lang)
                if not check.passed:
                    rejected.append({"reason": "identity_check", "detail": {"checks": check.reasons},
                                     "record": {"question": row["question"], "answer": answer}})
                    continue
                records.append(_qa(row["question"], answer, system_prompt(identity, lang) if system == "profile" else system, meta))
                made += 1
        if made < wanted:
            shortfall[lang] = wanted - made
    return records, rejected, shortfall


def balanced_order(pool: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Every question of ``pool``, taken round-robin over categories (each shuffled with ``seed``),
    so any prefix of the order covers the categories evenly. The same pool and seed give the same order."""
    rng = random.Random(seed)
    by_category: dict[str, list[dict[str, Any]]] = {}
    for row in pool:
        by_category.setdefault(row["category"], []).append(row)
    for rows in by_category.values():
        rng.shuffle(rows)
    order: list[dict[str, Any]] = []
    while any(by_category.values()):
        for rows in by_category.values():
            if rows:
                order.append(rows.pop())
    return order


def identity_check(identity: Identity, category: str, lang: str) -> Check:
    """The identity rules as a client check: a failing answer is re-asked, told in ``lang`` what to fix."""
    values = profile_values(identity, lang)
    texts = identity_reasks(lang)

    def check(answer: str) -> None:
        result = check_answer(category, answer, identity, lang)
        if result.passed:
            return
        problems = []
        for reason in result.reasons:
            rule, _, argument = reason.partition(":")
            problems.append(render(texts[rule], name=values["name"], author=values["author"], competitor=argument))
        reask = texts["lead"] + texts["sep"].join(problems) + texts["tail"]
        raise GenerationFailure("identity_check", "; ".join(result.reasons), answer, reask, checks=result.reasons)

    return check


def answer_job(
    client: LLMClient, identity: Identity, row: dict[str, Any], lang: str, system: str | None,
    temperature: float, max_tokens: int | None,
) -> Job:
    """Answer one question in character; an answer that breaks the identity rules is re-asked with
    the rule it broke, and after ``--reasks`` tries fails the job as ``identity_check``."""
    persona = system_prompt(identity, lang)
    request = Request.chat([("system", persona), ("user", row["question"])], temperature=temperature, max_tokens=max_tokens)
    tmpl = system_template(lang)
    check = identity_check(identity, row["category"], lang)

    async def run(client: LLMClient) -> list[dict[str, Any]]:
        reply = await client.complete(request, check)
        meta = {"lang": lang, "category": row["category"], "template": tmpl.name, "template_hash": tmpl.hash,
                "temperature": temperature}
        if "paraphrase_of" in row:
            meta["paraphrase_of"] = row["paraphrase_of"]
        record_system = persona if system == "profile" else system
        return [_qa(row["question"], reply.value, record_system, meta)]

    return Job(client.key(request), {"record": {**{k: v for k, v in row.items() if k != "meta"}, "lang": lang}}, run)
