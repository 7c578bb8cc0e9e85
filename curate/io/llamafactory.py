"""A LLaMA-Factory dataset folder: data files plus ``dataset_info.json``, written and read.

Writing: one data file plus the ``dataset_info.json`` entry for it.

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

Reading (``read_dataset_folder``, reached through ``read_rows``): ``DIR``
takes every dataset the folder registers, ``DIR:name1,name2`` the named
ones. Each entry's ``formatting``, ``columns``, ``tags`` and ``ranking`` are
applied as LLaMA-Factory's parser applies them (a ``columns`` or ``tags``
object replaces the defaults whole, unnamed keys become unset), and every row
is rewritten into thresher's own alpaca, sharegpt or messages shape, so the
shared format code maps it and errors still point at the data file and line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from thresher.schemas import Dialogue, Document, Preference, Record
from thresher.curate.errors import InputError, ThresherError
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


# ---------------------------------------------------------------- reading

DATASET_INFO = "dataset_info.json"
#: Entries that name data somewhere else: thresher reads local files only.
REMOTE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
MEDIA_COLUMNS = ("images", "videos", "audios")
COLUMN_NAMES = ("prompt", "query", "response", "history", "messages", "system", "tools",
                *MEDIA_COLUMNS, "chosen", "rejected", "kto_tag")
DEFAULT_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "messages": "conversations"}
DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", **{k: v for k, v in SHAREGPT_TAGS.items()
                                                               if k not in ("role_tag", "content_tag")}}
#: LLaMA-Factory's tag name -> (thresher sharegpt speaker, OpenAI role).
TAG_ROLES = {"user_tag": ("human", "user"), "assistant_tag": ("gpt", "assistant"),
             "observation_tag": ("observation", "tool"), "function_tag": ("function_call", "assistant"),
             "system_tag": ("system", "system")}


def is_dataset_folder(folder: Path) -> bool:
    """A folder with ``dataset_info.json`` that ``datasets.save_to_disk`` did not write (it adds state.json)."""
    return (folder / DATASET_INFO).is_file() and not (folder / "state.json").exists() \
        and not (folder / "dataset_dict.json").exists()


def dataset_spec(path: str | Path) -> tuple[Path, list[str] | None] | None:
    """``(folder, names)`` when ``path`` is ``DIR`` (names None: all) or ``DIR:name1,name2``; else None."""
    whole = Path(path)
    if whole.is_dir():
        return (whole, None) if is_dataset_folder(whole) else None
    folder, sep, names = str(path).rpartition(":")
    if sep and folder and Path(folder).is_dir() and is_dataset_folder(Path(folder)):
        return Path(folder), [name.strip() for name in names.split(",") if name.strip()]
    return None


def read_dataset_folder(folder: Path, names: list[str] | None = None) -> Iterator[Any]:
    """Every row of the named datasets (all when ``names`` is None), in thresher's shapes.

    Reading all of LLaMA-Factory's own ``data/`` folder skips, with a
    warning, the entries that hold no local text data (hub datasets,
    images/videos/audios); naming such an entry is an error that says so.
    """
    info_path = folder / DATASET_INFO
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(str(info_path), f"cannot read: {exc}") from None
    if not isinstance(info, dict):
        raise InputError(str(info_path), "must be a JSON object of dataset entries")
    every = names is None
    for name in list(info) if every else names:
        if name not in info:
            close = get_close_matches(name, list(info), n=1)
            hint = f"; did you mean {close[0]}?" if close else f" (it has: {', '.join(list(info)[:20])})"
            raise InputError(str(info_path), f"no dataset named {name!r}{hint}")
        entry = info[name]
        problem = unreadable(entry) if isinstance(entry, dict) else "its entry is not a JSON object"
        if problem and every:
            print(f"warning: {folder}: skipping dataset {name}: {problem}", file=sys.stderr)
            continue
        if problem:
            raise InputError(str(info_path), f"dataset {name}: {problem}")
        yield from read_entry(folder, name, entry)


def unreadable(entry: dict[str, Any]) -> str | None:
    """Why thresher cannot read an entry, with what to do; None when it can."""
    remote = next((key for key in REMOTE_KEYS if key in entry), None)
    if remote and "file_name" not in entry:
        return f"{remote} names remote data; download it and register it with file_name"
    if "file_name" not in entry:
        return "no file_name"
    media = [c for c in MEDIA_COLUMNS if (entry.get("columns") or {}).get(c)]
    if media:
        return f"maps {', '.join(media)}; thresher reads text-only data"
    if entry.get("formatting", "alpaca") not in ("alpaca", "sharegpt", "openai"):
        return f"unknown formatting {entry.get('formatting')!r} (alpaca, sharegpt or openai)"
    return None


def read_entry(folder: Path, name: str, entry: dict[str, Any]) -> Iterator[Any]:
    """The rows of one dataset entry (a file, or every file of a folder), normalised."""
    from thresher.curate.io.readers import Row, read_rows

    location = folder / entry["file_name"]
    if not location.exists():
        raise InputError(str(location), f"dataset {name}: no such file or folder (file_name in {folder / DATASET_INFO})")
    files = sorted(p for p in location.iterdir() if p.is_file()) if location.is_dir() else [location]
    if entry.get("num_samples") is not None:
        print(f"warning: {folder}: dataset {name}: num_samples is not applied, every record is read "
              "(sample with thresher mix PATH:RATE)", file=sys.stderr)
    columns, tags = columns_and_tags(entry)
    formatting, ranking = entry.get("formatting", "alpaca"), bool(entry.get("ranking"))
    for file in files:
        rows = _text_rows(file) if file.suffix == ".txt" else read_rows(file)
        for row in rows:
            if row.data is not None:
                row = Row(row.source, row.line, normalise(row.data, formatting, ranking, columns, tags))
            yield row


def _text_rows(file: Path) -> Iterator[Any]:
    """A ``.txt`` data file: one pretraining document per line, as LLaMA-Factory's text loader reads it."""
    from thresher.curate.io.readers import Row

    with open(file, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield Row(str(file), number, {"text": line.rstrip("\n")})


def columns_and_tags(entry: dict[str, Any]) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """The column and tag names in force: defaults, or the entry's objects in their place (LLaMA-Factory's rule)."""
    given = entry.get("columns")
    columns = ({key: DEFAULT_COLUMNS.get(key) for key in COLUMN_NAMES} if given is None
               else {key: given.get(key) for key in COLUMN_NAMES})
    given_tags = entry.get("tags")
    tags = dict(DEFAULT_TAGS) if given_tags is None else {key: given_tags.get(key) for key in DEFAULT_TAGS}
    return columns, tags


def normalise(data: dict[str, Any], formatting: str, ranking: bool, columns: dict[str, str | None],
              tags: dict[str, str | None]) -> dict[str, Any]:
    """One raw row of the dataset in thresher's alpaca, sharegpt, messages or document shape."""
    def column(key: str) -> Any:
        name = columns.get(key)
        return data.get(name) if name else None

    if formatting == "alpaca":
        row = _alpaca(column, ranking, supervised=bool(columns.get("response") or columns.get("kto_tag")))
    else:
        row = _conversation(column, ranking, tags, openai=formatting == "openai")
    label = column("kto_tag")
    if isinstance(label, bool):
        row["label"] = label
    return row


def _alpaca(column: Any, ranking: bool, supervised: bool) -> dict[str, Any]:
    """An alpaca row; an entry that maps no response (``columns: {prompt: text}``) holds pretraining text."""
    if not (supervised or ranking):
        return {"text": "\n".join(part for part in (column("prompt"), column("query")) if part)}
    row: dict[str, Any] = {"instruction": column("prompt") or "", "input": column("query") or ""}
    if ranking:
        row.update(chosen=column("chosen"), rejected=column("rejected"))
    else:
        row["output"] = column("response")
    for key in ("system", "history"):
        if column(key):
            row[key] = column(key)
    return row


def _conversation(column: Any, ranking: bool, tags: dict[str, str | None], openai: bool) -> dict[str, Any]:
    """sharegpt turns renamed to thresher's speakers; openai messages to OpenAI roles (tool calls kept)."""
    side = 1 if openai else 0
    roles = {tags[tag]: names[side] for tag, names in TAG_ROLES.items() if tags.get(tag)}

    def turn(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        role = value.get(tags["role_tag"] or "")
        content = value.get(tags["content_tag"] or "")
        if openai:
            message = {"role": roles.get(role, role), "content": content}
            if value.get("tool_calls"):
                message["tool_calls"] = value["tool_calls"]
            return message
        return {"from": roles.get(role, role), "value": content}

    messages = column("messages")
    key = "messages" if openai else "conversations"
    if not isinstance(messages, list):  # missing or malformed: the format code reports it with the field
        return {key: messages}
    turns = [turn(value) for value in messages]
    system = column("system")
    if isinstance(turns, list) and turns and isinstance(turns[0], dict) and tags.get("system_tag") \
            and turns[0].get("role" if openai else "from") == "system":
        system, turns = turns[0].get("content" if openai else "value"), turns[1:]
    if openai and ranking:
        prompt = ([{"role": "system", "content": system}] if system else []) + turns
        return {"prompt": prompt, "chosen": [turn(column("chosen"))], "rejected": [turn(column("rejected"))]}
    if openai:
        row: dict[str, Any] = {key: ([{"role": "system", "content": system}] if system else []) + turns}
    else:
        row = {key: turns}
        if system:
            row["system"] = system
    if column("tools"):
        row["tools"] = column("tools")
    if ranking and not openai:
        row.update(chosen=turn(column("chosen")), rejected=turn(column("rejected")))
    return row
