"""The texts of a record, by role, taken once from a record of any kind.

Filters, dedup, split and stats look at *roles*, not file formats: every
format reaches them through ``formats.to_record``, so an alpaca row, a
sharegpt conversation and an OpenAI ``messages`` list read alike. ``texts_of``
is the one place that walks a record; each caller then takes its view:

* ``prompt``: the user turns. The system prompt is left out everywhere: it is
  usually the same for a whole file and would make unrelated records alike.
  Earlier assistant turns and tool results are context, not the question.
* ``response``: what the filter judges: a dialogue's assistant turns, a
  preference pair's ``chosen`` (``rejected`` is meant to be worse; judging it
  would remove good pairs), a scored record's best response. Tool-call
  arguments are left out: JSON would trip prose rules.
* ``replies(every=True, tool_calls=True)``: what dedup compares: every
  candidate (chosen *and* rejected, every scored response) and every tool
  call, since two records that differ only there are different data.
* ``by_role()``: each text under its role, for stats.

Turns are joined with one newline: every consumer is line- or
whitespace-insensitive (dedup and split normalise whitespace, the rules
count non-empty lines). Blank texts (an assistant turn that only calls a
tool) are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from thresher.schemas import QA, Dialogue, Document, Message, Preference, Record, Scored

#: The field names rules may name in their ``fields`` list.
FIELDS = ("prompt", "response", "system", "text")


@dataclass(frozen=True, slots=True)
class Texts:
    """Every text of one record: the system prompt, the turns and candidate replies by role, a document's text.

    ``turns`` holds ``(role, text)`` in order, roles ``user``, ``assistant``,
    ``tool`` (a tool's result) and ``tool_call`` (``name arguments``: the
    model writes both). ``replies`` hold a preference pair's ``chosen`` and
    ``rejected``, or a scored record's ``response``s in file order;
    ``judged`` indexes the one the filter judges. ``turn_count`` counts
    non-system messages, the replies of a pair or a scored record as one.
    """

    system: str = ""
    turns: tuple[tuple[str, str], ...] = ()
    replies: tuple[tuple[str, str], ...] = ()
    judged: int = 0
    text: str = ""
    turn_count: int = 1

    def role(self, role: str) -> list[str]:
        """The turns of ``role``, in order."""
        return [text for turn_role, text in self.turns if turn_role == role]

    @property
    def prompt(self) -> str:
        """The user turns."""
        return "\n".join(self.role("user"))

    @property
    def response(self) -> str:
        """What the filter judges: assistant turns without tool calls, or the chosen / best reply."""
        return self.replies_text(every=False, tool_calls=False)

    def replies_text(self, every: bool = True, tool_calls: bool = True) -> str:
        """The responses: ``every`` candidate or only the judged one; ``tool_calls`` included or not."""
        if self.replies:
            return "\n".join(text for _, text in self.replies) if every else self.replies[self.judged][1]
        roles = ("assistant", "tool_call") if tool_calls else ("assistant",)
        return "\n".join(text for role, text in self.turns if role in roles)

    def get(self, field: str) -> str:
        """One of ``FIELDS``, by name (rules name their fields in YAML)."""
        return getattr(self, field)

    @property
    def body(self) -> str:
        """What a learned scorer reads: the prompt and the response, or the document."""
        return self.text or f"{self.prompt}\n{self.response}".strip()

    @property
    def output(self) -> str:
        """What a language model's perplexity is measured on: the response, or the document."""
        return self.text or self.response

    def by_role(self) -> dict[str, list[str]]:
        """Every text under its role: ``system``, the turn roles, ``chosen``/``rejected``/``response``, ``text``."""
        texts: dict[str, list[str]] = {"system": [self.system]} if self.system else {}
        for role, text in self.turns + self.replies:
            texts.setdefault(role, []).append(text)
        if self.text:
            texts["text"] = [self.text]
        return texts


def _present(text: str | None) -> str:
    """``text``, or "" when it is missing or blank: a blank system prompt is no system prompt."""
    return text if text and text.strip() else ""


def _system(messages: list[Message]) -> str:
    """The system prompt, which the schema only allows first."""
    return _present(messages[0].content) if messages and messages[0].role == "system" else ""


def _turns(messages: list[Message]) -> tuple[tuple[str, str], ...]:
    """Non-system messages as (role, text); each tool call follows its message's own (usually blank) text."""
    turns = []
    for message in messages:
        if message.role != "system" and message.content.strip():
            turns.append((message.role, message.content))
        turns += [("tool_call", f"{call.name} {call.arguments}") for call in message.tool_calls or ()]
    return tuple(turns)


def _non_system(messages: list[Message]) -> int:
    """Messages counted as turns: the system prompt is a setting, not a turn."""
    return sum(m.role != "system" for m in messages)


def texts_of(record: Record) -> Texts:
    """The texts of ``record``, by role."""
    if isinstance(record, Dialogue):
        return Texts(_system(record.messages), _turns(record.messages), turn_count=_non_system(record.messages))
    if isinstance(record, QA):
        return Texts(_present(record.system), (("user", record.question), ("assistant", record.answer)), turn_count=2)
    if isinstance(record, Preference):
        replies = (("chosen", record.chosen.content), ("rejected", record.rejected.content))
        return Texts(_system(record.prompt), _turns(record.prompt), replies, turn_count=_non_system(record.prompt) + 1)
    if isinstance(record, Scored):
        replies = tuple(("response", r.response) for r in record.responses)
        best = max(range(len(record.responses)), key=lambda i: record.responses[i].score)
        return Texts(_system(record.prompt), _turns(record.prompt), replies, best,
                     turn_count=_non_system(record.prompt) + 1)
    if isinstance(record, Document):
        return Texts(text=record.text)
    raise TypeError(f"no texts for a {record.kind} record")
