"""A LLaMA-Factory dataset folder: one data file plus the ``dataset_info.json`` entry for it.

LLaMA-Factory finds a dataset by name in ``dataset_info.json`` and maps its
columns through ``formatting``, ``columns``, ``tags`` and ``ranking`` (see
its ``data/README.md``). One dataset holds one kind of data (SFT, ranking
pairs, KTO-tagged dialogues or pretraining text), so the first record
written decides the kind and a record of another kind is refused.

An existing ``dataset_info.json`` in the folder keeps its other entries,
so OUT may be LLaMA-Factory's own ``data/`` folder.

Every mapped column is written in every record (an empty ``system`` or
``tools`` where a record has none), so the mapping holds for every row the
way LLaMA-Factory's converter reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thresher.schemas import Dialogue, Document, Preference, Record
from thresher.curate.errors import ThresherError
from thresher.curate.io.formats import alpaca
from thresher.curate.io.formats import sharegpt
from thresher.curate.io.formats.base import CannotRender, as_dialogue
from thresher.curate.io.writers import RecordWriter, write_json

STYLES = ("sharegpt", "alpaca")

#: sharegpt tags exactly as thresher writes the turns (LLaMA-Factory's defaults, spelled out).
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}


def data_kind(record: Record) -> str:
    """The LLaMA-Factory dataset kind a record belongs to."""
    if isinstance(record, Document):
        return "pretrain"
    if isinstance(record, Preference):
        return "ranking"
    return "kto" if "label" in record.meta else "sft"


def check_alternation(turns: list[dict[str, Any]]) -> None:
    """LLaMA-Factory's sharegpt rule: user or observation turns at even positions, assistant or function_call at odd."""
    for index, turn in enumerate(turns):
        allowed = ("human", "observation") if index % 2 == 0 else ("gpt", "function_call")
        if turn["from"] not in allowed:
            raise CannotRender("llamafactory sharegpt needs strictly alternating turns (several tool results in a row)")


class LlamaFactoryWriter:
    """Write records into ``folder/<name>.<suffix>`` and ``folder/dataset_info.json`` atomically."""

    def __init__(self, folder: str | Path, name: str | None = None, style: str = "sharegpt", suffix: str = ".json") -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}")
        self.folder = Path(folder)
        self.name = name or self.folder.name
        self.style = style
        self.file_name = f"{self.name}{suffix}"
        self.kind: str | None = None
        self._writer = RecordWriter(self.folder / self.file_name)

    @property
    def count(self) -> int:
        return self._writer.count

    def __enter__(self) -> LlamaFactoryWriter:
        self._writer.__enter__()
        return self

    def write(self, record: Record) -> None:
        """Render and write one record; ``CannotRender`` when it does not fit this dataset."""
        kind = data_kind(record)
        if self.kind is not None and kind != self.kind:
            raise CannotRender(f"llamafactory dataset holds {self.kind} data only, got {kind}")
        row = self.render(record, kind)
        self.kind = self.kind or kind
        self._writer.write(row)

    def render(self, record: Record, kind: str) -> dict[str, Any]:
        """One record as a row of this dataset, every mapped column present."""
        if kind == "pretrain":
            return {"text": record.text}  # type: ignore[attr-defined]
        if self.style == "alpaca":
            row = alpaca.render(record)
            row.setdefault("system", "")
            row.setdefault("history", [])
        else:
            row = sharegpt.render(record)
            check_alternation(row["conversations"])
            row.setdefault("system", "")
            if isinstance(as_dialogue(record), Dialogue):
                row.setdefault("tools", "")
        if kind == "kto":
            row["label"] = record.meta["label"]
        return row

    def entry(self) -> dict[str, Any]:
        """The ``dataset_info.json`` entry for what was written."""
        entry: dict[str, Any] = {"file_name": self.file_name}
        if self.kind == "pretrain":
            entry["columns"] = {"prompt": "text"}
            return entry
        entry["formatting"] = self.style
        if self.kind == "ranking":
            entry["ranking"] = True
        if self.style == "alpaca":
            columns = {"prompt": "instruction", "query": "input", "system": "system", "history": "history"}
            columns.update({"chosen": "chosen", "rejected": "rejected"} if self.kind == "ranking" else {"response": "output"})
        else:
            columns = {"messages": "conversations", "system": "system"}
            columns.update({"chosen": "chosen", "rejected": "rejected"} if self.kind == "ranking" else {"tools": "tools"})
            entry["tags"] = dict(SHAREGPT_TAGS)
        if self.kind == "kto":
            columns["kto_tag"] = "label"
        entry["columns"] = columns
        return entry

    def __exit__(self, *exc: Any) -> None:
        self._writer.__exit__(*exc)
        if exc[0] is None:
            write_json(self.folder / "dataset_info.json", {**self.existing_entries(), self.name: self.entry()})

    def existing_entries(self) -> dict[str, Any]:
        """Other datasets already registered in the folder (LLaMA-Factory's ``data/`` holds many)."""
        path = self.folder / "dataset_info.json"
        if not path.exists():
            return {}
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ThresherError(f"{path}: cannot add to it: {exc}") from None
        if not isinstance(entries, dict):
            raise ThresherError(f"{path}: cannot add to it: not a JSON object")
        return entries
