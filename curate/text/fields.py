"""The texts a filter looks at, taken from a record of any kind.

Filters judge *fields*, not file formats: ``prompt`` (the user turns),
``response`` (the assistant turns), ``system`` and ``text`` (a corpus
document). Every format reaches these through ``formats.to_record``, so an
alpaca row, a sharegpt conversation and an OpenAI ``messages`` list are judged
alike.

For a preference record the response is ``chosen`` (``rejected`` is meant to
be worse, so judging it would remove good pairs); for a scored record it is
the best-scored response.
"""

from __future__ import annotations

from dataclasses import dataclass

from thresher.schemas import QA, Dialogue, Document, Message, Preference, Record, Scored

#: The field names rules may name in their ``fields`` list.
FIELDS = ("prompt", "response", "system", "text")


@dataclass(frozen=True, slots=True)
class Texts:
    """The four judged fields of one record; absent fields are empty strings."""

    prompt: str = ""
    response: str = ""
    system: str = ""
    text: str = ""

    def get(self, field: str) -> str:
        return getattr(self, field)

    @property
    def body(self) -> str:
        """What a learned scorer reads: the prompt and the response, or the document."""
        return self.text or f"{self.prompt}\n{self.response}".strip()

    @property
    def output(self) -> str:
        """What a language model's perplexity is measured on: the response, or the document."""
        return self.text or self.response


def _join(messages: list[Message], role: str) -> str:
    return "\n\n".join(m.content for m in messages if m.role == role and m.content.strip())


def _system(messages: list[Message]) -> str:
    return messages[0].content if messages and messages[0].role == "system" else ""


def texts_of(record: Record) -> Texts:
    """The judged fields of ``record``."""
    if isinstance(record, Dialogue):
        return Texts(_join(record.messages, "user"), _join(record.messages, "assistant"), _system(record.messages))
    if isinstance(record, QA):
        return Texts(record.question, record.answer, record.system or "")
    if isinstance(record, Preference):
        return Texts(_join(record.prompt, "user"), record.chosen.content, _system(record.prompt))
    if isinstance(record, Scored):
        best = max(record.responses, key=lambda r: r.score)
        return Texts(_join(record.prompt, "user"), best.response, _system(record.prompt))
    if isinstance(record, Document):
        return Texts(text=record.text)
    raise TypeError(f"no judged texts for a {record.kind} record")
