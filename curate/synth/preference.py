"""Preference data: sample several responses per prompt, let a judge score them.

Per prompt: ``samples`` responses (distinct ``seed`` per sample, so each is its
own cached request), then one judge request that scores every response from
1 to 5 on accuracy, relevance, fluency and concision. The mean is the score of
a ``Scored`` record; ``Scored.to_preferences`` derives the chosen/rejected
pairs. The judge's reply schema is built per prompt with exactly one score
per response, so a judge that skips one is re-asked by the client.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, create_model

from thresher.prompts.banks import template
from thresher.schemas import Message, Scored, ScoredResponse
from thresher.curate.synth.client import LLMClient
from thresher.curate.synth.wire import GenerationFailure, Request
from thresher.curate.synth.inputs import PromptItem
from thresher.curate.synth.jobs import Job
from thresher.curate.io.writers import RecordWriter, read_jsonl_objects

JUDGE_TEMPLATE = "synth/judge.md"
CRITERIA = ("accuracy", "relevance", "fluency", "concision")

Grade = Annotated[int, Field(ge=1, le=5)]


class ResponseScore(BaseModel):
    """The judge's grades for one numbered response."""

    response: int
    accuracy: Grade
    relevance: Grade
    fluency: Grade
    concision: Grade


def judgement_schema(count: int) -> type[BaseModel]:
    """A reply schema demanding exactly ``count`` scores."""
    return create_model(
        f"Judgement{count}",
        scores=(list[ResponseScore], Field(min_length=count, max_length=count)),
    )


def judge_prompt(messages: list[tuple[str, str]], responses: list[str]) -> str:
    conversation = "\n".join(f"{role}: {content}" for role, content in messages)
    numbered = "\n\n".join(f"[response {i}]\n{text}" for i, text in enumerate(responses, 1))
    return template(JUDGE_TEMPLATE).render(prompt=conversation, responses=numbered)


def preference_job(
    client: LLMClient, item: PromptItem, samples: int, temperature: float, max_tokens: int | None, judge_model: str | None
) -> Job:
    """Sample, judge, and return one ``Scored`` record (as a dict)."""
    requests = [
        Request.chat(item.messages, temperature=temperature, max_tokens=max_tokens, seed=i) for i in range(samples)
    ]
    tmpl = template(JUDGE_TEMPLATE)
    # The job is one prompt; its key covers every sample request, the judge model and the judge prompt.
    parts = [client.key(r) for r in requests] + [judge_model or "", tmpl.hash]
    key = hashlib.blake2b("|".join(parts).encode(), digest_size=12).hexdigest()

    async def run(client: LLMClient) -> list[dict[str, Any]]:
        replies = await asyncio.gather(*(client.complete(r) for r in requests))
        responses = [reply.value for reply in replies]
        judge = Request.chat(
            [("user", judge_prompt(item.messages, responses))],
            schema=judgement_schema(len(responses)), temperature=0.0, model=judge_model,
        )
        verdict = (await client.complete(judge)).value
        by_number = {score.response: score for score in verdict.scores}
        grades = [by_number.get(i + 1) for i in range(len(responses))]
        if any(g is None for g in grades):
            raise GenerationFailure("schema", "the judge did not score every response by its number", str(verdict))
        scored = Scored(
            prompt=[Message(role=role, content=content) for role, content in item.messages],
            responses=[
                ScoredResponse(response=text, score=sum(getattr(g, c) for c in CRITERIA) / len(CRITERIA))
                for text, g in zip(responses, grades)
            ],
        )
        meta = {
            "criteria": [{c: getattr(g, c) for c in CRITERIA} for g in grades],
            "judge_model": judge_model or client.config.model, "template": tmpl.name, "template_hash": tmpl.hash,
            "temperature": temperature,
        }
        return [{**scored.model_dump(exclude_none=True, exclude={"id"}), "meta": meta}]

    return Job(key, item.source, run)


def write_pairs(scored_path: Path, pairs_path: Path, min_margin: float) -> int:
    """Rewrite the derived preference pairs from every scored record (atomic, so never duplicated)."""
    count = 0
    with RecordWriter(pairs_path) as out:
        for data in read_jsonl_objects(scored_path):
            meta = data.pop("meta", {})
            record = Scored.model_validate({**data, "meta": meta})
            for pair in record.to_preferences(min_margin):
                out.write({**pair.model_dump(exclude_none=True, exclude={"id"}), "meta": {"scored": record.id, "margin": pair.meta["margin"]}})
                count += 1
    return count
