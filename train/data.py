"""SFT data: records -> dialogues -> token ids with labels on assistant turns only.

Any file thresher reads works: each row is mapped by the shared format code
(``curate.formats.to_record``); ``QA`` records become two- or three-message
dialogues. Rows that are not SFT records, or that fail the data contract, are
removed with a reason (``data.removed.jsonl``, the conservation rule).

Labels. Every dialogue is rendered with the chat template; the characters of
each assistant turn are located by rendering prefixes of the dialogue
(``messages[:i]`` with the generation prompt marks where the answer starts,
``messages[:i+1]`` where the turn ends), so the masking is right for any
template, including ones that inject a default system prompt. Tokens are
mapped to characters with the fast tokenizer's offsets. The trained span runs
from the first character of the answer through the template's end-of-turn
token (trailing whitespace after it, like ChatML's newline, is not trained):
that token is what teaches the model to stop. A record whose ``meta.stopped``
is false holds a last answer cut at a token limit (``thresher generate
--keep-cut``): its text is trained, its end-of-turn token is not, so the model
learns the words without learning to stop where the limit happened to fall.

Truncation policy (``--max-len``). Turns are kept whole: a dialogue longer
than ``max_len`` tokens is cut after the last assistant turn that ends within
``max_len`` (later turns dropped; counted as truncated). A record whose first
answer does not fit has nothing trainable left and is removed with reason
``too_long``; an answer is never trained with its end cut off, because that
teaches the model not to stop.
"""

from __future__ import annotations

import json
import random
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thresher.curate.errors import ThresherError
from thresher.curate.stage import Stage
from thresher.schemas import QA, Dialogue, Message

IGNORE = -100


@dataclass(slots=True)
class Example:
    """One tokenized dialogue: ``labels`` is ``IGNORE`` outside assistant turns."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def trained(self) -> int:
        """Tokens that carry a label (the ones predicted, after the shift)."""
        return sum(label != IGNORE for label in self.labels[1:])


@dataclass
class DataReport:
    """What went into training: the numbers printed before the first step."""

    records: int = 0
    examples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0
    removed: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "examples": self.examples,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
            "truncated": self.truncated,
            "removed": dict(self.removed),
        }


def as_template_messages(dialogue: Dialogue, system: str | None = None) -> list[dict[str, Any]]:
    """The dialogue as the plain dicts chat templates expect; ``system`` fills a missing system prompt."""
    messages: list[dict[str, Any]] = []
    if system and dialogue.system is None:
        messages.append({"role": "system", "content": system})
    for message in dialogue.messages:
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            item["tool_calls"] = [
                {"type": "function", "function": {"name": call.name, "arguments": _json_or_text(call.arguments)}}
                for call in message.tool_calls
            ]
        messages.append(item)
    return messages


def _json_or_text(text: str) -> Any:
    """Tool-call arguments as the object templates ``tojson``; text when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def render(tokenizer: Any, messages: list[dict[str, Any]], tools: Any = None, generation_prompt: bool = False) -> str:
    """The template's text for ``messages`` (no tokenization: offsets come from one pass over the full text)."""
    return tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
    )


def assistant_spans(tokenizer: Any, messages: list[dict[str, Any]], tools: Any = None) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the character span of every assistant turn in it."""
    text = render(tokenizer, messages, tools)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start_text = render(tokenizer, messages[:index], tools, generation_prompt=True)
        end_text = render(tokenizer, messages[: index + 1], tools)
        if not (text.startswith(start_text) and text.startswith(end_text)):
            raise ThresherError(
                "the chat template does not render a dialogue's prefix as a prefix of the whole dialogue "
                "(it rewrites earlier turns), so assistant tokens cannot be located; "
                "pass --chat-template FILE with a prefix-stable template"
            )
        end = len(end_text.rstrip())
        spans.append((len(start_text), end))
    return text, spans


def tokenize_dialogue(
    tokenizer: Any, dialogue: Dialogue, max_len: int, system: str | None = None, open_end: bool = False
) -> Example | None:
    """Token ids and labels for ``dialogue``; None when no answer fits in ``max_len`` tokens.

    ``open_end``: the last answer was cut at a token limit, so its end-of-turn token is not trained.
    """
    messages = as_template_messages(dialogue, system)
    tools = _json_or_text(dialogue.tools) if dialogue.tools else None
    text, spans = assistant_spans(tokenizer, messages, tools)
    # No token spans more characters than the longest vocabulary entry, so nothing past this many
    # characters can be among the first max_len tokens: a 20 MB answer is not tokenized whole.
    text = text[: max_len * longest_token(tokenizer) + 1]
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = encoding["input_ids"]
    offsets: list[tuple[int, int]] = encoding["offset_mapping"]
    labels = [IGNORE] * len(ids)
    turn_ends: list[int] = []  # token index just past each assistant turn
    for index, (span_start, span_end) in enumerate(spans):
        last = None
        for position, (start, end) in enumerate(offsets):
            if end > span_start and start < span_end:
                labels[position] = ids[position]
                last = position
        if last is not None:
            if open_end and index == len(spans) - 1:
                labels[last] = IGNORE  # its end-of-turn token: never produced, so never trained
            turn_ends.append(last + 1)
    fitting = [end for end in turn_ends if end <= max_len]
    if not fitting:
        return None
    cut = len(ids) if len(ids) <= max_len else fitting[-1]
    return Example(ids[:cut], labels[:cut], truncated=cut < len(ids))


def answer_was_cut(data: Any) -> bool:
    """Whether a row says its last answer was cut at a token limit (``meta.stopped: false``)."""
    meta = data.get("meta") if isinstance(data, dict) else None
    return isinstance(meta, dict) and meta.get("stopped") is False


_LONGEST_TOKEN: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def longest_token(tokenizer: Any) -> int:
    """The most characters one token of ``tokenizer`` can cover (its longest vocabulary entry)."""
    if tokenizer not in _LONGEST_TOKEN:
        _LONGEST_TOKEN[tokenizer] = max(map(len, tokenizer.get_vocab()), default=1)
    return _LONGEST_TOKEN[tokenizer]


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an assistant turn under the current template (for ``generation_config``).

    Found by rendering a probe dialogue and reading the last trained token,
    so it is right for any template; the tokenizer's EOS is included too.
    """
    probe = Dialogue(messages=[Message(role="user", content="hi"), Message(role="assistant", content="hello")])
    example = tokenize_dialogue(tokenizer, probe, max_len=1 << 30)
    assert example is not None
    trained = [label for label in example.labels if label != IGNORE]
    ids = [trained[-1]] if trained else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def read_dialogues(paths: Iterable[str | Path], stage: Stage) -> Iterator[tuple[Dialogue, Any]]:
    """Stream every SFT record of ``paths`` with its row; other rows go to the stage's removed file."""
    for record, row in stage.records(paths):
        if isinstance(record, QA):
            record = record.to_dialogue()
        if not isinstance(record, Dialogue):
            stage.remove(row, "not_sft", kind=record.kind)
            continue
        yield record, row


def load_examples(
    paths: Sequence[str | Path],
    tokenizer: Any,
    max_len: int,
    out_dir: str | Path,
    name: str = "data",
    system: str | None = None,
) -> tuple[list[Example], DataReport]:
    """Read, render and tokenize ``paths``; removed rows and stats land in ``out_dir``.

    Writes ``{name}.removed.jsonl`` and ``{name}.stats.json`` (counts add up:
    records in == examples + removed).
    """
    out = Path(out_dir)
    report = DataReport()
    examples: list[Example] = []
    with Stage(f"train-{name}", out / f"{name}.removed.jsonl", out / f"{name}.stats.json") as stage:
        for dialogue, row in read_dialogues(paths, stage):
            example = tokenize_dialogue(tokenizer, dialogue, max_len, system, open_end=answer_was_cut(row.data))
            if example is None or example.trained == 0:
                stage.remove(row, "too_long" if example is None else "no_trainable_tokens", max_len=max_len)
                continue
            stage.keep()
            examples.append(example)
            report.tokens += len(example.input_ids)
            report.trained_tokens += example.trained
            report.truncated += example.truncated
        report.records = stage.records_in
        report.examples = len(examples)
        report.removed = dict(stage.removed)
        stage.extra["report"] = report.as_dict()
    return examples, report


def split_eval(examples: list[Example], val_size: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out ``val_size`` (a fraction, or a count when >= 1) of the examples, seeded."""
    if val_size <= 0:
        return examples, []
    count = int(val_size) if val_size >= 1 else max(1, round(len(examples) * val_size))
    if count >= len(examples):
        raise ThresherError(f"--val-size {val_size} leaves no training examples out of {len(examples)}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]
