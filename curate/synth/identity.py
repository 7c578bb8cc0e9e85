"""Identity (self-cognition) records: who the model is, in Chinese and English.

Two backends produce the same QA records:

* offline: the bank's questions paired with the bank's templated answers,
  filled from the ``Identity`` profile. Each round gives every question a
  different answer template, so records stay distinct and every category is
  covered before any question repeats.
* API: the bank's questions plus LLM paraphrases (deduplicated), answered in
  character under the LangGPT system prompt built from the profile.

Both pass every answer through ``text.identity.check_answer``; failures go to
the rejects file with their reasons, never to the output. Languages are
balanced: ``count`` is split evenly across ``langs``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from thresher.prompts.banks import Template, identity_answers, identity_defaults, identity_questions, render, template
from thresher.schemas import QA, Identity
from thresher.curate.text.identity import answer_language, check_answer
from thresher.curate.synth.client import LLMClient
from thresher.curate.synth.wire import GenerationFailure, Request
from thresher.curate.synth.jobs import Job, RunSummary, run_jobs
from thresher.curate.synth.paraphrase import paraphrase_job
from thresher.curate.io.writers import read_jsonl_objects


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


def _pick_balanced(pool: list[dict[str, Any]], wanted: int, rng: random.Random) -> list[dict[str, Any]]:
    """Up to ``wanted`` questions taken round-robin over categories, so each is represented."""
    by_category: dict[str, list[dict[str, Any]]] = {}
    for row in pool:
        by_category.setdefault(row["category"], []).append(row)
    for rows in by_category.values():
        rng.shuffle(rows)
    picked: list[dict[str, Any]] = []
    while len(picked) < wanted and any(by_category.values()):
        for rows in by_category.values():
            if rows and len(picked) < wanted:
                picked.append(rows.pop())
    return picked


async def api_records(
    identity: Identity,
    langs: Sequence[str],
    count: int,
    *,
    client: LLMClient,
    output: Path,
    questions_path: Path,
    rejects: Path,
    paraphrases: int,
    seed: int,
    system: str | None,
    temperature: float,
    max_tokens: int | None,
    retry_rejects: bool,
    console: Any,
) -> list[RunSummary]:
    """Expand the bank with paraphrases, then answer a balanced selection in character."""
    summaries = []
    rng = random.Random(seed)
    wanted = split_count(count, langs)
    bank = {lang: list(identity_questions(lang)) for lang in langs}
    if paraphrases > 0:
        seen = [row["question"] for rows in bank.values() for row in rows]
        seen += [row["question"] for row in read_jsonl_objects(questions_path) if isinstance(row.get("question"), str)]
        dropped = [0]
        jobs = []
        for lang, rows in bank.items():
            # Paraphrase only as many bank questions as the count needs (a quarter spare for duplicates).
            sources = _pick_balanced(rows, math.ceil(wanted[lang] * 1.25 / (paraphrases + 1)), rng)
            for row in sources:
                def to_records(texts: list[str], row: dict[str, Any] = row, lang: str = lang) -> list[dict[str, Any]]:
                    return [{**row, "question": text, "lang": lang, "paraphrase_of": row["question"]} for text in texts]

                jobs.append(paraphrase_job(client, row["question"], paraphrases, seen, {"record": row}, to_records,
                                           dropped, max_tokens=max_tokens))
        summary = await run_jobs("identity questions", jobs, client, questions_path, rejects,
                                 retry_rejects=retry_rejects, console=console)
        summary.extra["duplicates_dropped"] = dropped[0]
        summaries.append(summary)
        keys = {job.key for job in jobs}
        for row in read_jsonl_objects(questions_path):
            if row.get("meta", {}).get("request") in keys and row.get("lang") in bank:
                bank[row["lang"]].append(row)
    jobs = []
    shortfall = 0
    for lang, pool in bank.items():
        picked = _pick_balanced(pool, wanted[lang], rng)
        if len(picked) < wanted[lang]:
            shortfall += wanted[lang] - len(picked)
            console.print(f"[yellow]warning:[/] only {len(picked)} distinct {lang} questions for {wanted[lang]} records; "
                          "raise --paraphrases for more")
        jobs += [answer_job(client, identity, row, lang, system, temperature, max_tokens) for row in picked]
    summary = await run_jobs("identity answers", jobs, client, output, rejects, retry_rejects=retry_rejects, console=console)
    if shortfall:
        summary.extra["questions_short"] = shortfall
    summaries.append(summary)
    return summaries


def answer_job(
    client: LLMClient, identity: Identity, row: dict[str, Any], lang: str, system: str | None,
    temperature: float, max_tokens: int | None,
) -> Job:
    """Answer one question in character; the answer must pass the identity checks."""
    persona = system_prompt(identity, lang)
    request = Request.chat([("system", persona), ("user", row["question"])], temperature=temperature, max_tokens=max_tokens)
    tmpl = system_template(lang)

    async def run(client: LLMClient) -> list[dict[str, Any]]:
        reply = await client.complete(request)
        check = check_answer(row["category"], reply.value, identity, lang)
        if not check.passed:
            raise GenerationFailure("identity_check", "; ".join(check.reasons), reply.text, checks=check.reasons)
        meta = {"lang": lang, "category": row["category"], "template": tmpl.name, "template_hash": tmpl.hash,
                "temperature": temperature}
        if "paraphrase_of" in row:
            meta["paraphrase_of"] = row["paraphrase_of"]
        record_system = persona if system == "profile" else system
        return [_qa(row["question"], reply.value, record_system, meta)]

    return Job(client.key(request), {"record": {**{k: v for k, v in row.items() if k != "meta"}, "lang": lang}}, run)
