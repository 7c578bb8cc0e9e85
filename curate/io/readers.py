"""One reader for every common record file, streaming, with file and line kept.

``read_rows(path)`` yields ``Row`` objects: the parsed JSON object (or the
reason it could not be parsed) plus the file and the line (row number for
tabular files) it came from, so every later error can point at it.

A broken JSONL line is one bad row, not a failed file; a file that cannot be
read as a whole (missing, unknown type, a ``.json`` that does not parse or
holds more after its top-level array, undecodable bytes) raises ``InputError``.
A record nested deeper than ``MAX_DEPTH`` levels is refused the same way (a
bad row in JSONL, a failed ``.json`` file): no training record nests that
deep, and one that does would exhaust the interpreter's stack in whatever
walks it next.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thresher.schemas import json_type_name
from thresher.curate.errors import InputError

#: Suffixes ``read_rows`` understands, each optionally followed by ``.gz``.
SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".xlsx", ".parquet")

#: The deepest nesting of arrays and objects a record may have.
MAX_DEPTH = 100
TOO_DEEP = f"nested too deeply (more than {MAX_DEPTH} levels of arrays and objects)"

# Tabular cells that hold structure (a conversation, a history) arrive as JSON text.
_STRUCTURED_COLUMNS = frozenset(
    {"conversations", "messages", "conversation", "history", "chosen", "rejected",
     "prompt", "completion", "outputs", "responses", "facts"}
)


@dataclass(slots=True)
class Row:
    """One record as read: ``data`` is the JSON object, or None with ``error`` set."""

    source: str
    line: int
    data: dict[str, Any] | None
    error: str | None = None
    raw: str | None = None


def file_type(path: str | os.PathLike[str]) -> tuple[str, bool]:
    """Return (suffix, gzipped) for ``path``, or raise ``InputError`` naming what is supported."""
    p = Path(path)
    if p.is_dir():
        if not is_datasets_folder(p):
            raise InputError(str(p), "folder is not one written by datasets' save_to_disk")
        return "datasets", False
    name = p.name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix, gz
    raise InputError(str(p), f"unknown file type; expected one of {', '.join(SUFFIXES)} (optionally .gz)")


def is_datasets_folder(path: Path) -> bool:
    """A folder written by ``datasets``' ``save_to_disk`` (any other folder stands for the record files in it)."""
    return (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()


def read_rows(path: str | os.PathLike[str]) -> Iterator[Row]:
    """Stream every record of ``path`` as a ``Row``; a LLaMA-Factory folder (``DIR`` or
    ``DIR:name1,name2``) yields the rows of its datasets, mapped as LLaMA-Factory maps them."""
    from thresher.curate.io.llamafactory import dataset_spec, read_dataset_folder

    spec = dataset_spec(path)
    if spec is not None:
        yield from read_dataset_folder(*spec)
        return
    source = str(path)
    pattern = not Path(path).exists() and bool(set("*?[") & set(source))
    if pattern or Path(path).is_dir() and not is_datasets_folder(Path(path)):
        from thresher.curate.io.shards import expand_inputs  # a folder of record files, or a glob: each file in turn

        for file in expand_inputs([source]):
            yield from read_rows(file)
        return
    if not Path(path).exists():
        raise InputError(source, "no such file or folder")
    suffix, gz = file_type(path)
    reader = {
        ".jsonl": _read_jsonl,
        ".json": _read_json,
        ".csv": _read_delimited,
        ".tsv": _read_delimited,
        ".xlsx": _read_xlsx,
        ".parquet": _read_parquet,
        "datasets": _read_datasets,
    }[suffix]
    try:
        yield from reader(source, suffix, gz)
    except UnicodeDecodeError as exc:
        with open(source, "rb") as handle:
            utf16 = handle.read(2) in (b"\xff\xfe", b"\xfe\xff")
        reason = "UTF-16 text; save it as UTF-8" if utf16 else f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise InputError(source, reason) from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(source, f"cannot read: {exc}") from None


def _open_text(source: str, gz: bool, newline: str = "") -> io.TextIOBase:
    """Open as UTF-8, dropping a BOM if there is one."""
    if gz:
        return gzip.open(source, "rt", encoding="utf-8-sig", newline=newline)
    return open(source, encoding="utf-8-sig", newline=newline)


def _as_row(source: str, line: int, value: Any, raw: str | None = None) -> Row:
    if isinstance(value, dict):
        return Row(source, line, value)
    return Row(source, line, None, f"record must be a JSON object, got {json_type_name(value)}", raw)


@dataclass(frozen=True, slots=True)
class Shard:
    """A byte range of a plain JSONL file that starts and ends on line boundaries."""

    offset: int
    length: int
    first_line: int


def jsonl_shards(path: str | os.PathLike[str], shard_bytes: int = 4 << 20) -> Iterator[Shard]:
    """Cut a plain (not gzipped) JSONL file into line-aligned shards for worker processes.

    Only newlines are counted here (``bytes.count`` runs at memory speed), so
    the workers do all the decoding and parsing and every record still knows
    its line.
    """
    with open(path, "rb") as handle:
        offset, line = 0, 1
        while True:
            block = handle.read(shard_bytes)
            if not block:
                return
            block += handle.readline()  # finish the line the block cut through
            yield Shard(offset, len(block), line)
            offset += len(block)
            line += block.count(b"\n")


def read_jsonl_shard(path: str | os.PathLike[str], shard: Shard) -> Iterator[Row]:
    """The rows of one shard; raises ``InputError`` on bytes that are not UTF-8."""
    source = str(path)
    with open(path, "rb") as handle:
        handle.seek(shard.offset)
        data = handle.read(shard.length)
    try:
        text = data.decode("utf-8-sig" if shard.offset == 0 else "utf-8")
    except UnicodeDecodeError as exc:
        line = shard.first_line + data.count(b"\n", 0, exc.start)
        raise InputError(source, f"not UTF-8 text ({exc.reason})", line) from None
    for number, line_text in enumerate(text.split("\n"), shard.first_line):
        if line_text.strip():
            yield jsonl_row(source, number, line_text)


def too_deep(value: Any, text: str) -> bool:
    """Whether ``value`` (parsed from ``text``) nests deeper than ``MAX_DEPTH``.

    Counting brackets in the text is one C pass and settles almost every
    record; only text with that many brackets gets its depth measured.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > MAX_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return False


def jsonl_row(source: str, number: int, text: str) -> Row:
    """Parse one JSONL line; a line that is not a JSON object is a bad row, not an error."""
    raw = text.rstrip("\r\n")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return Row(source, number, None, f"invalid JSON ({exc.msg} at column {exc.colno})", raw)
    except RecursionError:
        return Row(source, number, None, TOO_DEEP, raw)
    if too_deep(value, text):
        return Row(source, number, None, TOO_DEEP, raw)
    if type(value) is dict:
        return Row(source, number, value)
    return _as_row(source, number, value, raw)


def _read_jsonl(source: str, _suffix: str, gz: bool) -> Iterator[Row]:
    # Lines end at "\n" only: a raw U+2028 or "\r" inside a record is not a line break.
    with _open_text(source, gz, newline="\n") as handle:
        for number, text in enumerate(handle, 1):
            if text.strip():
                yield jsonl_row(source, number, text)


def _read_json(source: str, _suffix: str, gz: bool) -> Iterator[Row]:
    """A top-level array, or an object holding exactly one array of records.

    The text is scanned element by element with ``raw_decode`` so each record
    knows the line it starts on, which ``json.load`` would throw away.
    """
    with _open_text(source, gz) as handle:
        text = handle.read()
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    try:
        if text.startswith("[", pos):
            end = yield from _scan_array(source, text, pos, decoder)
        elif text.startswith("{", pos):
            end = yield from _scan_object(source, text, pos, decoder)
        else:
            raise InputError(source, "a .json file must hold an array of records or an object holding one")
    except json.JSONDecodeError as exc:
        raise InputError(source, f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except RecursionError:
        raise InputError(source, TOO_DEEP) from None
    end = _skip_space(text, end)
    if end < len(text):
        # `[...][...]` or `[...] garbage`: json.load would refuse it, and reading only the first array loses records.
        line = text.count("\n", 0, end) + 1
        raise InputError(source, f"extra data after the top-level {'array' if text[pos] == '[' else 'object'} "
                                 "(one .json file holds one array; use .jsonl for one record per line)", line)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _scan_array(source: str, text: str, pos: int, decoder: json.JSONDecoder) -> Generator[Row, None, int]:
    """Yield each element of the array starting at ``text[pos] == '['``; return the position after it."""
    line, counted = 1, 0
    pos = _skip_space(text, pos + 1)
    if text.startswith("]", pos):
        return pos + 1
    while True:
        line += text.count("\n", counted, pos)
        counted = start = pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except RecursionError:
            raise InputError(source, TOO_DEEP, line) from None
        if too_deep(value, text[start:pos]):
            raise InputError(source, TOO_DEEP, line)
        yield _as_row(source, line, value)
        pos = _skip_space(text, pos)
        if text.startswith(",", pos):
            pos = _skip_space(text, pos + 1)
        elif text.startswith("]", pos):
            return pos + 1
        else:
            raise json.JSONDecodeError("expected ',' or ']'", text, pos)


def _scan_object(source: str, text: str, pos: int, decoder: json.JSONDecoder) -> Generator[Row, None, int]:
    """Find the one array of records inside a top-level object and scan it; return the end of the object."""
    whole, end = decoder.raw_decode(text, pos)
    arrays = [key for key, value in whole.items() if isinstance(value, list)]
    if len(arrays) != 1:
        raise InputError(source, f"a top-level object must hold exactly one array of records, found {len(arrays)}")
    key = arrays[0]
    # Walk the object's members to the array's position without a second full parse.
    pos = _skip_space(text, pos + 1)
    while True:
        name, pos = decoder.raw_decode(text, pos)
        pos = _skip_space(text, pos)
        pos = _skip_space(text, pos + 1)  # the ':'
        if name == key:
            yield from _scan_array(source, text, pos, decoder)
            return end
        _, pos = decoder.raw_decode(text, pos)
        pos = _skip_space(text, pos)
        pos = _skip_space(text, pos + 1)  # the ','


def _cell(column: str, value: Any) -> Any:
    """Decode JSON text in structural columns; leave everything else as read."""
    if column in _STRUCTURED_COLUMNS and isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return value
        return value if too_deep(parsed, value) else parsed  # left as text, the record is invalid, not a crash
    return value


def _read_delimited(source: str, suffix: str, gz: bool) -> Iterator[Row]:
    # csv refuses cells over 128 KB by default; a long answer or a whole conversation in one cell is data.
    csv.field_size_limit(2**31 - 1)
    with _open_text(source, gz) as handle:
        reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
        try:
            yield from _delimited_rows(source, reader)
        except csv.Error as exc:
            raise InputError(source, f"not valid {suffix[1:].upper()}: {exc}", reader.line_num) from None


def _delimited_rows(source: str, reader: csv.DictReader) -> Iterator[Row]:
    for row in reader:
        # csv's line_num is the physical line the row ended on; cells may span lines.
        line = reader.line_num
        if None in row:
            yield Row(source, line, None, "more cells than header columns")
            continue
        yield Row(source, line, {k: _cell(k, v) for k, v in row.items() if v not in (None, "")})


def _read_xlsx(source: str, _suffix: str, gz: bool) -> Iterator[Row]:
    from openpyxl import load_workbook

    if gz:
        raise InputError(source, "gzip-compressed .xlsx is not supported; .xlsx is already compressed")
    workbook = load_workbook(source, read_only=True, data_only=True)
    try:
        rows = workbook.active.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            return
        columns = [str(c) if c is not None else "" for c in header]
        for number, values in enumerate(rows, 2):
            if all(v is None for v in values):
                continue
            data = {c: _cell(c, v) for c, v in zip(columns, values) if c and v is not None}
            yield Row(source, number, data)
    finally:
        workbook.close()


def _read_parquet(source: str, _suffix: str, gz: bool) -> Iterator[Row]:
    import pyarrow.parquet as pq

    handle = gzip.open(source, "rb") if gz else source
    yield from _parquet_rows(source, pq.ParquetFile(handle).iter_batches(batch_size=4096), 1)


def parquet_row_groups(path: str | os.PathLike[str]) -> list[int]:
    """Rows in each row group of a plain (not gzipped) Parquet file: the pieces workers read."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def read_parquet_group(path: str | os.PathLike[str], group: int, first_line: int) -> Iterator[Row]:
    """The rows of one row group, numbered from ``first_line`` (its first row's number in the file)."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path).read_row_group(group)
    yield from _parquet_rows(str(path), table.to_batches(max_chunksize=4096), first_line)


def _parquet_rows(source: str, batches: Any, first_line: int) -> Iterator[Row]:
    number = first_line - 1
    for batch in batches:
        for record in batch.to_pylist():
            number += 1
            yield Row(source, number, {k: v for k, v in record.items() if v is not None})


def _read_datasets(source: str, _suffix: str, _gz: bool) -> Iterator[Row]:
    from datasets import Dataset, load_from_disk

    dataset = load_from_disk(source)
    if not isinstance(dataset, Dataset):
        raise InputError(source, f"holds several splits ({', '.join(dataset)}); pass one split's folder")
    for number, record in enumerate(dataset, 1):
        yield Row(source, number, {k: v for k, v in record.items() if v is not None})
