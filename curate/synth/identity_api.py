"""Identity records through an API: exactly ``-n`` of them, and no request asked twice.

The pool of questions per language is the packaged bank plus LLM paraphrases
of bank questions (kept in ``OUT.questions.jsonl``). Answers are asked for in
rounds: each round asks, per language, for as many questions not asked before
as records are still missing, in a category-balanced order. An answer that
breaks the identity rules is re-asked with the rule it broke (``--reasks``);
a question whose answer still fails goes to the rejects file and the next
round replaces it. When the pool runs dry, more bank questions are
paraphrased; only when every bank question has been paraphrased and every
question asked does the run stop short, and then it says so (``Shortfall``).

Every decision is read from the files (records per language in the output,
request keys in the output and the rejects), so a rerun of a finished job
finds nothing missing and sends nothing, and a resumed one asks only what
never finished.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from thresher.prompts.banks import identity_questions
from thresher.schemas import Identity
from thresher.curate.errors import ThresherError
from thresher.curate.io.writers import read_jsonl_objects
from thresher.curate.synth.client import LLMClient
from thresher.curate.synth.identity import answer_job, balanced_order, split_count
from thresher.curate.synth.jobs import RunSummary, run_jobs
from thresher.curate.synth.paraphrase import paraphrase_job

#: Paraphrase this many more sources than the count strictly needs: some rewrites are dropped as repeats.
SPARE = 1.25


class Shortfall(ThresherError):
    """Fewer records than ``-n`` asked for, with the reasons (exit 1: the output holds what was made)."""

    exit_code = 1


class _Pool:
    """The questions of each language: the bank, then the paraphrases this run asked for (or found done)."""

    def __init__(self, langs: Sequence[str], seed: int, questions_path: Path) -> None:
        self.seed = seed
        self.bank = {lang: list(identity_questions(lang)) for lang in langs}
        self.rows = {lang: list(rows) for lang, rows in self.bank.items()}
        self.sources = {lang: balanced_order(rows, seed) for lang, rows in self.bank.items()}
        self.paraphrased = dict.fromkeys(langs, 0)
        self.seen = [row["question"] for rows in self.bank.values() for row in rows]
        self.seen += [row["question"] for row in read_jsonl_objects(questions_path) if isinstance(row.get("question"), str)]

    def can_grow(self, lang: str) -> bool:
        return self.paraphrased[lang] < len(self.sources[lang])


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
) -> tuple[list[RunSummary], Shortfall | None]:
    """Answer balanced questions in character until ``count`` records are written (see the module
    docstring); returns this run's summaries and, when the bank ran out first, the ``Shortfall``."""
    wanted = split_count(count, langs)
    pool = _Pool(langs, seed, questions_path)
    questions = RunSummary("identity questions")
    answers = RunSummary("identity answers")
    asked: set[str] = set()  # answer requests sent in this run: asked once, whatever came back
    dropped = [0]

    async def paraphrase(batch: dict[str, int]) -> None:
        jobs = []
        for lang, sources in batch.items():
            start = pool.paraphrased[lang]
            pool.paraphrased[lang] = min(len(pool.sources[lang]), start + sources)
            for row in pool.sources[lang][start : pool.paraphrased[lang]]:
                def to_records(texts: list[str], row: dict[str, Any] = row, lang: str = lang) -> list[dict[str, Any]]:
                    return [{**row, "question": text, "lang": lang, "paraphrase_of": row["question"]} for text in texts]

                jobs.append(paraphrase_job(client, row["question"], paraphrases, pool.seen, {"record": row}, to_records,
                                           dropped, max_tokens=max_tokens))
        if not jobs:
            return
        questions.add(await run_jobs("identity questions", jobs, client, questions_path, rejects,
                                     retry_rejects=retry_rejects, console=console))
        keys = {job.key for job in jobs}
        for row in read_jsonl_objects(questions_path):
            if row.get("meta", {}).get("request") in keys and row.get("lang") in pool.rows:
                pool.rows[row["lang"]].append(row)

    if paraphrases > 0:
        await paraphrase({lang: math.ceil(n * SPARE / (paraphrases + 1)) for lang, n in wanted.items()})
    while True:
        written, finished = _progress(output, rejects, retry_rejects)
        missing = {lang: n - written[lang] for lang, n in wanted.items() if written[lang] < n}
        jobs = []
        for lang, n in missing.items():
            candidates = _candidates(client, identity, pool, lang, system, temperature, max_tokens, finished | asked)
            while len(candidates) < n and paraphrases > 0 and pool.can_grow(lang):
                await paraphrase({lang: math.ceil((n - len(candidates)) * SPARE / paraphrases)})
                candidates = _candidates(client, identity, pool, lang, system, temperature, max_tokens, finished | asked)
            jobs += candidates[:n]
        if not jobs:
            break
        asked |= {job.key for job in jobs}
        answers.add(await run_jobs("identity answers", jobs, client, output, rejects, retry_rejects=retry_rejects,
                                   console=console))
    questions.extra["duplicates_dropped"] = dropped[0]
    summaries = ([questions] if paraphrases > 0 else []) + [answers]
    shortfall = _shortfall(count, sum(written[lang] for lang in wanted), missing, rejects, asked) if missing else None
    return summaries, shortfall


def _candidates(
    client: LLMClient, identity: Identity, pool: _Pool, lang: str, system: str | None,
    temperature: float, max_tokens: int | None, finished: set[str],
) -> list[Any]:
    """Answer jobs for the questions of ``lang`` not asked before, in balanced order."""
    jobs = [answer_job(client, identity, row, lang, system, temperature, max_tokens)
            for row in balanced_order(pool.rows[lang], pool.seed)]
    return [job for job in jobs if job.key not in finished]


def _progress(output: Path, rejects: Path, retry_rejects: bool) -> tuple[Counter[str], set[str]]:
    """(records written per language, request keys finished) as the files say now."""
    written: Counter[str] = Counter()
    finished: set[str] = set()
    for record in read_jsonl_objects(output):
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        written[meta.get("lang")] += 1
        finished.add(meta.get("request"))
    if not retry_rejects:
        finished |= {entry.get("request") for entry in read_jsonl_objects(rejects)}
    return written, finished


def _shortfall(count: int, written: int, missing: dict[str, int], rejects: Path, asked: set[str]) -> Shortfall:
    """``asked for N, wrote M``, what is missing per language, and why the answers asked in this run failed."""
    reasons: Counter[str] = Counter()
    for entry in read_jsonl_objects(rejects):
        if entry.get("request") in asked:
            checks = (entry.get("detail") or {}).get("checks")
            reasons.update(checks if isinstance(checks, list) else [str(entry.get("reason"))])
    short = ", ".join(f"{n} {lang}" for lang, n in missing.items())
    why = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common()) or "none"
    return Shortfall(f"asked for {count}, wrote {written}: {short} short, every bank question and paraphrase "
                     f"has been asked (raise --paraphrases or --reasks); failed answers by reason: {why}")
