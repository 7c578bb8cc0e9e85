"""The prompts RL samples from: the prompt side of any record file thresher reads.

A ``Dialogue`` or ``QA`` gives everything before its last assistant turn, a
``Preference`` or ``Scored`` record its ``prompt``; prompt-only rows work too
(TRL's ``{"prompt": ...}`` as text or messages, thresher's question banks'
``{"question": ...}``, alpaca's ``instruction`` without ``output``). Rows
with no prompt (documents), rows that break the data contract and prompts
that leave no room for a reply in ``--max-len`` are removed with a reason
(``prompts.removed.jsonl``; records in == prompts + removed).

Each prompt keeps what the identity reward asks about: its question
``category`` and ``lang``, from the row (``category``/``lang`` at the top
level or in ``meta``, as ``thresher synth identity`` writes them); a prompt
without a category is looked up in the shipped question banks, and is a
``general`` prompt (where naming itself is parroting) when not found there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from thresher.curate.errors import RecordError
from thresher.curate.io.formats import to_record
from thresher.curate.stage import Stage
from thresher.curate.text.scripts import zh_or_en
from thresher.schemas import QA, Dialogue, Message, Preference, Scored, check_turn_order
from thresher.train.pairs import PairEncoder

GENERAL = "general"


@dataclass
class Prompt:
    """One prompt: its messages (ending with the user's turn), token ids with the generation prompt,
    and the identity question category and language."""

    messages: list[Message]
    ids: list[int]
    category: str = GENERAL
    lang: str = "en"


@dataclass
class PromptReport:
    records: int = 0
    prompts: int = 0
    tokens: int = 0
    removed: dict[str, int] = field(default_factory=dict)


def prompt_side(record: Any) -> list[Message] | None:
    """The messages a record's (last) reply answers; None for records without a prompt."""
    if isinstance(record, QA):
        record = record.to_dialogue()
    if isinstance(record, Dialogue):
        return list(record.messages[:-1])
    if isinstance(record, (Preference, Scored)):
        return list(record.prompt)
    return None


def prompt_only(row: dict[str, Any]) -> list[Message] | None:
    """The prompt of a prompt-only row (no reply in it); None when the row is a full record."""
    replies = ("completion", "chosen", "rejected", "responses", "outputs", "answer", "output")
    if any(key in row for key in replies):
        return None
    system = [Message(role="system", content=row["system"])] if isinstance(row.get("system"), str) and row["system"] else []
    if "prompt" in row:
        prompt = row["prompt"]
        if isinstance(prompt, list):
            messages = [Message.model_validate(message) for message in prompt]
        else:
            messages = system + [Message(role="user", content=prompt)]
    elif "question" in row:
        messages = system + [Message(role="user", content=row["question"])]
    elif "instruction" in row:
        extra = row.get("input")
        text = f"{row['instruction']}\n{extra}" if extra else row["instruction"]
        messages = system + [Message(role="user", content=text)]
    else:
        return None
    return check_turn_order(messages, last="user")


@lru_cache(maxsize=1)
def bank_categories() -> dict[str, str]:
    """Question text -> category over the shipped synthesis banks and held-out probes."""
    from thresher.prompts.banks import LANGS, eval_questions, identity_questions

    rows = [row for lang in LANGS for row in identity_questions(lang)] + eval_questions()
    return {row["question"].strip(): row["category"] for row in rows}


def labels(row: dict[str, Any], messages: list[Message]) -> tuple[str, str]:
    """(category, lang) of a prompt: from the row or its meta, else the banks and the text's script."""
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    question = messages[-1].content.strip()
    category = row.get("category") or meta.get("category") or bank_categories().get(question, GENERAL)
    lang = row.get("lang") or meta.get("lang") or zh_or_en(question)
    return str(category), str(lang)


def load_prompts(paths: Sequence[str | Path], encoder: PairEncoder, max_tokens: int, out_dir: str | Path,
                 name: str = "prompts") -> tuple[list[Prompt], PromptReport]:
    """Read every prompt of ``paths``; writes ``{name}.removed.jsonl`` and ``{name}.stats.json`` to ``out_dir``."""
    out = Path(out_dir)
    prompts: list[Prompt] = []
    report = PromptReport()
    with Stage(f"train-{name}", out / f"{name}.removed.jsonl", out / f"{name}.stats.json") as stage:
        for row in stage.rows(paths):
            try:
                messages = prompt_only(row.data)
                if messages is None:
                    record = to_record(row.data)
                    messages = prompt_side(record)
                    if messages is None:
                        stage.remove(row, "no_prompt", kind=record.kind)
                        continue
                ids, _ = encoder.split(messages, [])
            except RecordError as exc:
                stage.remove(row, "invalid", field=exc.field, error=exc.reason)
                continue
            except (ValidationError, ValueError, TypeError) as exc:  # a prompt-only row that breaks the contract
                stage.remove(row, "invalid", error=str(exc).splitlines()[0])
                continue
            if len(ids) > max_tokens:
                stage.remove(row, "too_long", tokens=len(ids), max_prompt_tokens=max_tokens)
                continue
            stage.keep()
            category, lang = labels(row.data, messages)
            prompts.append(Prompt(messages, ids, category, lang))
            report.tokens += len(ids)
        report.records = stage.records_in
        report.prompts = len(prompts)
        report.removed = dict(stage.removed)
        stage.extra["report"] = {"records": report.records, "prompts": report.prompts, "tokens": report.tokens}
    return prompts, report
