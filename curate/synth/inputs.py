"""Prompts to synthesize from: a text file (one per line) or any record file thresher reads.

Every record is mapped through the shared format code (``formats.to_record``),
so alpaca, sharegpt, messages, TRL and the rest all work; a record that
breaks the contract stops the run with its file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thresher.schemas import QA, Dialogue, Document, Message, Preference, Scored
from thresher.curate.errors import InputError, RecordError
from thresher.curate.io.formats import to_record
from thresher.curate.io.readers import read_rows


@dataclass
class PromptItem:
    """One prompt: where it came from, the chat messages up to the last user turn."""

    file: str
    line: int
    record: Any
    messages: list[tuple[str, str]]

    @property
    def source(self) -> dict[str, Any]:
        """The rejects-file view of this prompt."""
        return {"file": self.file, "line": self.line, "record": self.record}

    @property
    def instruction(self) -> str:
        """The last user turn: what ``paraphrase`` rewrites."""
        return self.messages[-1][1]


def _messages(record: Any) -> list[tuple[str, str]]:
    if isinstance(record, QA):
        return ([("system", record.system)] if record.system else []) + [("user", record.question)]
    if isinstance(record, Dialogue):
        last_user = max(i for i, m in enumerate(record.messages) if m.role == "user")
        return [(m.role, m.content) for m in record.messages[: last_user + 1]]
    if isinstance(record, (Preference, Scored)):
        return [(m.role, m.content) for m in record.prompt]
    if isinstance(record, Document):
        return [("user", record.text)]
    raise RecordError("", f"a {record.kind} record holds no prompt")


def load_prompts(path: str | Path) -> list[PromptItem]:
    """Every prompt of ``path``; ``.txt`` files hold one prompt per non-blank line."""
    source = str(path)
    if source.endswith(".txt"):
        try:
            lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(source, f"cannot read: {exc}") from None
        return [PromptItem(source, n, line, [("user", line.strip())]) for n, line in enumerate(lines, 1) if line.strip()]
    items = []
    for row in read_rows(path):
        if row.data is None:
            raise InputError(source, row.error or "unreadable", row.line)
        try:
            items.append(PromptItem(source, row.line, row.data, _messages(to_record(row.data))))
        except RecordError as exc:
            raise InputError(source, str(exc), row.line) from None
    return items


def turns_of(messages: list[tuple[str, str]]) -> tuple[str | None, list[tuple[str, str]]]:
    """(system prompt or None, the other turns)."""
    system = next((content for role, content in messages if role == "system"), None)
    return system, [(role, content) for role, content in messages if role != "system"]


def record_dict(system: str | None, turns: list[tuple[str, str]], answer: str | None) -> dict[str, Any]:
    """The canonical output record: QA for one turn, a Dialogue for more, and for a prompt
    without an answer TRL's prompt-only shape ``{"prompt": [messages]}``."""
    head = [Message(role="system", content=system)] if system else []
    messages = head + [Message(role=role, content=content) for role, content in turns]
    if answer is None:
        return {"prompt": [m.model_dump(exclude_none=True) for m in messages]}
    if len(turns) == 1:
        return QA(question=turns[0][1], answer=answer, system=system).model_dump(exclude_none=True, exclude={"id"})
    dialogue = Dialogue(messages=[*messages, Message(role="assistant", content=answer)])
    return dialogue.model_dump(exclude_none=True, exclude={"id"})


def reference_answer(record: Any) -> str | None:
    """The answer an input record already has (kept by a paraphrased instruction)."""
    if not isinstance(record, dict):
        return None
    parsed = to_record(record)
    if isinstance(parsed, QA):
        return parsed.answer
    if isinstance(parsed, Dialogue) and parsed.messages[-1].role == "assistant":
        return parsed.messages[-1].content
    return None
