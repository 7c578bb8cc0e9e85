"""Preference data for reward models and DPO: records -> shared-prompt token ids -> batches.

Records. ``Preference`` records are used as they are; a ``Scored`` record
becomes every pair of its responses whose scores differ (higher score
chosen, ``Scored.to_preferences``), each pair carrying the score difference
as ``meta.margin``. For the regression reward model ``Scored`` records give
one (prompt, response, score) item per response. Rows that are not
preference data go to ``{name}.removed.jsonl`` with a reason (the
conservation rule): records in == records used + removed.

Two input layouts, chosen by the model:

* ``chat`` (decoders): the prompt is rendered with the chat template and its
  generation prompt; the reply is the rest of the rendered dialogue up to and
  including the end-of-turn token (trailing whitespace after it is not part
  of the reply, as in SFT's labels). Prompt and reply are tokenized
  separately, which is exactly what the model sees at generation time, and
  chosen and rejected share the same prompt ids.
* ``pair`` (encoders such as BERT, which have no chat template): the prompt
  text and the reply are the tokenizer's sentence pair (``[CLS] prompt [SEP]
  reply [SEP]`` for BERT), built by the tokenizer's own post-processor. A
  multi-turn prompt (or one with a system prompt) is written as
  ``role: content`` lines.

Truncation policy (``--max-len``), the same for both layouts and for DPO: if
prompt + longest reply does not fit, the prompt is cut from the left (the
turns nearest the reply are kept) but keeps at least half of the budget, then
each reply is cut at its end. Truncated pairs are counted in the report.
"""

from __future__ import annotations

import copy
import math
from functools import cached_property
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thresher.curate.errors import ThresherError
from thresher.curate.io.readers import Row
from thresher.curate.stage import Stage
from thresher.schemas import Dialogue, Message, Preference, Scored
from thresher.train.collate import Batches, length_grouped
from thresher.train.data import IGNORE, as_template_messages, render

#: The margin key ``Scored.to_preferences`` writes into each pair's meta.
SCORE_MARGIN = "margin"


@dataclass(slots=True)
class PairExample:
    """One preference pair as token ids: a shared prompt and two replies."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    margin: float = 0.0
    truncated: bool = False


@dataclass(slots=True)
class ScoredExample:
    """One (prompt, reply) with its target score, for the regression reward model."""

    prompt: list[int]
    reply: list[int]
    score: float
    truncated: bool = False


@dataclass
class PairReport:
    """What went into training: printed before the first step and saved in the stats file."""

    records: int = 0
    examples: int = 0
    truncated: int = 0
    tokens: int = 0
    removed: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "examples": self.examples, "truncated": self.truncated,
                "tokens": self.tokens, "removed": dict(self.removed)}


class PairEncoder:
    """(prompt messages, reply) -> token ids, identically for training, evaluation and scoring."""

    def __init__(self, tokenizer: Any, max_len: int, layout: str, system: str | None = None) -> None:
        if layout not in ("chat", "pair"):
            raise ValueError(f"unknown layout {layout!r}")
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.layout = layout
        self.system = system
        if getattr(tokenizer, "backend_tokenizer", None) is None:
            raise ThresherError(f"{type(tokenizer).__name__} has no fast (tokenizers) backend; preference training needs one")
        # A private copy of the fast tokenizer without the checkpoint's own padding/truncation settings.
        self.backend = copy.deepcopy(tokenizer.backend_tokenizer)
        self.backend.no_padding()
        self.backend.no_truncation()
        self.specials = self.backend.num_special_tokens_to_add(True) if layout == "pair" else 0

    def _ids(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def split(self, prompt: Sequence[Message], replies: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        """Prompt ids and each reply's ids, untruncated."""
        if self.layout == "pair":
            if len(prompt) == 1 and prompt[0].role == "user" and not self.system:
                text = prompt[0].content
            else:
                turns = ([f"system: {self.system}"] if self.system and prompt[0].role != "system" else [])
                text = "\n".join(turns + [f"{m.role}: {m.content}" for m in prompt])
            return self._ids(text), [self._ids(reply) for reply in replies]
        # as_template_messages takes a Dialogue, which must end with a reply: a placeholder, dropped at once.
        messages = as_template_messages(Dialogue(messages=[*prompt, Message(role="assistant", content="x")]),
                                        self.system)[:-1]
        start = render(self.tokenizer, messages, generation_prompt=True)
        reply_ids = []
        for reply in replies:
            full = render(self.tokenizer, messages + [{"role": "assistant", "content": reply}])
            if not full.startswith(start):
                raise ThresherError("the chat template does not render the prompt as a prefix of the dialogue; "
                                    "pass --chat-template FILE with a prefix-stable template")
            reply_ids.append(self._ids(full[len(start):].rstrip()))
        return self._ids(start), reply_ids

    def fit(self, prompt: list[int], replies: list[list[int]]) -> tuple[list[int], list[list[int]], bool]:
        """Apply the truncation policy of the module docstring."""
        budget = self.max_len - self.specials
        longest = max(len(reply) for reply in replies)
        if len(prompt) + longest <= budget:
            return prompt, replies, False
        keep = min(len(prompt), max(budget - longest, budget // 2))
        prompt = prompt[len(prompt) - keep:]
        return prompt, [reply[: budget - keep] for reply in replies], True

    def encode(self, prompt: Sequence[Message], replies: Sequence[str]) -> tuple[list[int], list[list[int]], bool]:
        """Split and fit: the ids every caller trains or scores on."""
        return self.fit(*self.split(prompt, replies))

    def join(self, prompt: list[int], reply: list[int]) -> tuple[list[int], list[int]]:
        """Model input ids and token type ids for one (prompt, reply)."""
        if self.layout == "chat":
            ids = prompt + reply
            return ids, [0] * len(ids)
        (head, middle, tail), (type_a, type_b) = self.pair_frame
        ids = head + prompt + middle + reply + tail
        types = [type_a] * (len(head) + len(prompt) + len(middle)) + [type_b] * (len(reply) + len(tail))
        return ids, types

    @cached_property
    def pair_frame(self) -> tuple[tuple[list[int], list[int], list[int]], tuple[int, int]]:
        """Where the tokenizer's post-processor puts its special tokens around a sentence pair.

        Found by post-processing two one-token sentences, so it is right for
        BERT (``[CLS] a [SEP] b [SEP]``), RoBERTa (``<s> a </s></s> b </s>``) and the like.
        """
        first = self.backend.encode("a", add_special_tokens=False)
        second = self.backend.encode("b", add_special_tokens=False)
        joined = self.backend.post_process(first, second)
        ids, types = list(joined.ids), list(joined.type_ids)
        a = ids.index(first.ids[0])
        b = len(ids) - 1 - ids[::-1].index(second.ids[0])
        return (ids[:a], ids[a + len(first.ids): b], ids[b + len(second.ids):]), (types[a], types[b])


# ---------------------------------------------------------------- records


def margin_of(pair: Preference, row: Row, margin_field: str | None) -> float | None:
    """The pair's margin: ``margin_field`` from the pair's meta, else from the raw row; 0 without a field."""
    if margin_field is None:
        return 0.0
    value = pair.meta.get(margin_field)
    if value is None and isinstance(row.data, dict):
        value = row.data.get(margin_field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def read_records(paths: Iterable[str | Path], stage: Stage) -> Iterator[tuple[Preference | Scored, Row]]:
    """Every ``Preference`` and ``Scored`` record of ``paths``; other rows go to the removed file."""
    for record, row in stage.records(paths):
        if not isinstance(record, (Preference, Scored)):
            stage.remove(row, "not_preference", kind=record.kind)
            continue
        yield record, row


def load_pairs(
    paths: Sequence[str | Path], encoder: PairEncoder, out_dir: str | Path, name: str = "data",
    margin_field: str | None = None,
) -> tuple[list[PairExample], PairReport]:
    """Read and tokenize preference pairs; writes ``{name}.removed.jsonl`` and ``{name}.stats.json``."""
    out = Path(out_dir)
    examples: list[PairExample] = []
    report = PairReport()
    with Stage(f"train-{name}", out / f"{name}.removed.jsonl", out / f"{name}.stats.json") as stage:
        for record, row in read_records(paths, stage):
            pairs = record.to_preferences() if isinstance(record, Scored) else [record]
            if not pairs:
                stage.remove(row, "no_pairs", why="no two responses have different scores")
                continue
            margins = [margin_of(pair, row, margin_field) for pair in pairs]
            if any(margin is None for margin in margins):
                stage.remove(row, "no_margin", field=margin_field)
                continue
            stage.keep()
            for pair, margin in zip(pairs, margins):
                prompt, (chosen, rejected), truncated = encoder.encode(
                    pair.prompt, [pair.chosen.content, pair.rejected.content])
                examples.append(PairExample(prompt, chosen, rejected, margin, truncated))
                report.truncated += truncated
                report.tokens += 2 * len(prompt) + len(chosen) + len(rejected)
        report.records = stage.records_in
        report.examples = len(examples)
        report.removed = dict(stage.removed)
        stage.extra["report"] = report.as_dict()
    return examples, report


def load_scored(
    paths: Sequence[str | Path], encoder: PairEncoder, out_dir: str | Path, name: str = "data",
) -> tuple[list[ScoredExample], PairReport]:
    """Read ``Scored`` records as (prompt, response, score) items for the regression reward model."""
    out = Path(out_dir)
    examples: list[ScoredExample] = []
    report = PairReport()
    with Stage(f"train-{name}", out / f"{name}.removed.jsonl", out / f"{name}.stats.json") as stage:
        for record, row in read_records(paths, stage):
            if not isinstance(record, Scored):
                stage.remove(row, "not_scored", why="--loss regression needs Scored records")
                continue
            stage.keep()
            prompt, replies, truncated = encoder.encode(record.prompt, [r.response for r in record.responses])
            for reply, response in zip(replies, record.responses):
                examples.append(ScoredExample(prompt, reply, response.score, truncated))
                report.truncated += truncated
                report.tokens += len(prompt) + len(reply)
        report.records = stage.records_in
        report.examples = len(examples)
        report.removed = dict(stage.removed)
        stage.extra["report"] = report.as_dict()
    return examples, report


# ---------------------------------------------------------------- batches


def pad_rows(rows: Sequence[tuple[list[int], list[int]]], pad_id: int, pad_to: int | None = None,
             with_types: bool = False) -> dict[str, Any]:
    """Right-padded ``input_ids`` and ``attention_mask`` (and ``token_type_ids``) for (ids, type ids) rows."""
    import torch

    width = pad_to or max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (ids, type_ids) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        types[r, : len(ids)] = torch.tensor(type_ids)
        mask[r, : len(ids)] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if with_types:  # sentence pairs (BERT-style); decoders take no token types
        batch["token_type_ids"] = types
    return batch


def pair_batch(examples: Sequence[PairExample], encoder: PairEncoder, pad_id: int,
               pad_to: int | None = None) -> dict[str, Any]:
    """All chosen rows, then all rejected rows, in one padded batch (one forward pass for both).

    In the chat layout ``labels`` mark the reply tokens (prompt and padding
    are ``IGNORE``), for DPO's log-probabilities.
    """
    import torch

    rows = [encoder.join(e.prompt, e.chosen) for e in examples] + [encoder.join(e.prompt, e.rejected) for e in examples]
    batch = pad_rows(rows, pad_id, pad_to, with_types=encoder.layout == "pair")
    if encoder.layout == "chat":
        labels = torch.full_like(batch["input_ids"], IGNORE)
        replies = [e.chosen for e in examples] + [e.rejected for e in examples]
        for r, (reply, example) in enumerate(zip(replies, list(examples) * 2)):
            start = len(example.prompt)
            labels[r, start : start + len(reply)] = torch.tensor(reply, dtype=torch.long)
        batch["labels"] = labels
    batch["margin"] = torch.tensor([e.margin for e in examples], dtype=torch.float32)
    return batch


def scored_batch(examples: Sequence[ScoredExample], encoder: PairEncoder, pad_id: int) -> dict[str, Any]:
    """One row per (prompt, reply) with its target ``score``."""
    import torch

    batch = pad_rows([encoder.join(e.prompt, e.reply) for e in examples], pad_id,
                     with_types=encoder.layout == "pair")
    batch["score"] = torch.tensor([e.score for e in examples], dtype=torch.float32)
    return batch


def pair_length(example: PairExample | ScoredExample) -> int:
    if isinstance(example, PairExample):
        return len(example.prompt) + max(len(example.chosen), len(example.rejected))
    return len(example.prompt) + len(example.reply)


def grouped_batches(examples: Sequence[Any], batch_size: int, seed: int, collate: Any) -> Batches:
    """Length-grouped batches (minimal padding), reproducible from ``seed``."""
    groups = length_grouped([pair_length(e) for e in examples], batch_size, seed)
    return Batches(groups, lambda group: collate([examples[i] for i in group]))
