"""Atomic output: a file is either complete or absent, never half-written.

Every writer writes to a temporary file beside the target and renames it into
place on success (``os.replace`` is atomic on one file system), so an
interrupted run never leaves a truncated output that a rerun would trust.

The temporary file is named ``.NAME.PID.XXXXXXXX.tmp``; one whose process is
gone (a run killed with ``kill -9``) is removed by the next write of the same
output, and nothing that does not match that exact name is ever touched.
A new output gets the mode the umask gives any new file (0644 under the usual
022), and a replaced one keeps the mode it had, so a file shared with a
serving container or another user stays readable to them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from thresher.curate.errors import InputError, ThresherError
from thresher.curate.io.claims import OutputLock, check_output, process_alive
from thresher.schemas import json_type_name


class UnsupportedOutput(ThresherError, ValueError):
    """An output path whose suffix names no format thresher writes (a usage error, exit 2)."""


#: Temporary files this process has open, which the stale-file sweep must leave alone.
_OPEN_TEMPS: set[str] = set()


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(name)}\.(\d+)\.[0-9a-f]{{8}}\.tmp")


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete the temporary files of ``target`` that a dead process left behind; returns them."""
    pattern = _temp_pattern(target.name)
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or entry.path in _OPEN_TEMPS or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or not process_alive(pid):  # ours but not open: left by an earlier process
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Give files a library just wrote the mode any new file gets under the umask.

    safetensors writes its files 0600 whatever the umask; a model folder must
    be readable by whoever serves it, as the tokenizer and config beside it are.
    """
    mode = 0o666 & ~umask()
    for path in paths:
        os.chmod(path, mode)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` only if the block succeeds."""
    target = Path(path)
    check_output(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = str(target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to any new file
    _OPEN_TEMPS.add(tmp)
    try:
        try:
            os.fchmod(fd, stat.S_IMODE(target.stat().st_mode))  # a replaced file keeps its mode
        except FileNotFoundError:
            pass
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _OPEN_TEMPS.discard(tmp)


def require_new_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` if it is absent or an empty folder; call before slow work so a bad ``-o`` fails fast."""
    target = Path(path)
    check_output(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ThresherError(f"{target} exists and is not empty; choose a new output folder")
    return target


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A folder beside ``path`` that becomes ``path`` only if the block succeeds.

    For outputs made of several files (a model folder): a crash leaves
    ``.NAME.partial`` (removed on the next try), never a half-written ``NAME``
    that a later load would trust. ``path`` must be absent or an empty folder,
    so an output never overwrites anything.
    """
    target = require_new_folder(path)
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def dumps(record: Any) -> str:
    """One JSON line: UTF-8 text kept readable (no ``\\u`` escapes for Chinese).

    A lone surrogate (``"\\ud83d"`` in the input, half an emoji) cannot be
    written as UTF-8; such a record is written with ASCII escapes instead, which
    is still valid JSON and reads back to the same string.
    """
    text = json.dumps(record, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(record)
    return text


def write_json(path: str | os.PathLike[str], value: Any) -> None:
    """Write one JSON document atomically, indented for people."""
    with atomic_open(path) as handle:
        json.dump(value, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


class JsonlWriter:
    """Append records to a JSONL file that appears atomically on ``close``.

    Use as a context manager; if the block raises, the target is left as it was.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        check_output(self.path)
        self.count = 0
        self._context = atomic_open(self.path)
        self._handle: IO[str] | None = None

    def __enter__(self) -> JsonlWriter:
        self._handle = self._context.__enter__()
        return self

    def write(self, record: Any) -> None:
        """Write one record as a JSON line."""
        assert self._handle is not None, "use JsonlWriter as a context manager"
        self._handle.write(dumps(record))
        self._handle.write("\n")
        self.count += 1

    def __exit__(self, *exc: Any) -> None:
        self._context.__exit__(*exc)


class RecordWriter:
    """Write records in the file type ``path``'s suffix names: .jsonl or .json (optionally .gz),
    .parquet, or .csv (optionally .gz).

    A ``.json`` output is one array, streamed element by element so memory
    stays bounded. Parquet and CSV need every column before the first row
    (a ``system`` that only some records have is still a column), so those
    rows are held until ``close``; CSV cells hold text only, so a record with
    a nested value (a multi-turn ``history``, a message list) is refused with
    ``TabularError`` and the caller decides where it goes. The file appears
    atomically on ``close``.
    """

    SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.gz = self.path.name.lower().endswith(".gz")
        name = self.path.name.lower().removesuffix(".gz")
        self.type = next((s for s in self.SUFFIXES if name.endswith(s)), None)
        if self.type is None or (self.gz and self.type == ".parquet"):
            raise UnsupportedOutput(
                f"{self.path}: unsupported output type; use .jsonl, .json, .parquet or .csv (.gz allowed except for .parquet)"
            )
        check_output(self.path)
        self.array = self.type == ".json"
        self.count = 0
        self._rows: list[dict[str, Any]] = []
        self._context = atomic_open(self.path, "wb" if self.gz or self.type == ".parquet" else "w")
        self._handle: Any = None

    def __enter__(self) -> RecordWriter:
        handle = self._context.__enter__()
        if self.gz:
            import gzip
            import io

            handle = io.TextIOWrapper(gzip.GzipFile(fileobj=handle, mode="wb", mtime=0), encoding="utf-8", newline="")
        self._handle = handle
        if self.array:
            handle.write("[")
        return self

    def write(self, record: dict[str, Any]) -> None:
        """Write one record (raises ``TabularError`` for a nested value in a CSV output)."""
        if self.type == ".csv":
            record = csv_row(record)
        if self.type in (".csv", ".parquet"):
            self._rows.append(record)
        else:
            if self.array:
                self._handle.write(",\n" if self.count else "\n")
            self._handle.write(dumps(record))
            if not self.array:
                self._handle.write("\n")
        self.count += 1

    def _columns(self) -> list[str]:
        """Every key of every held row, in first-seen order."""
        return list(dict.fromkeys(key for row in self._rows for key in row))

    def _finish_tabular(self) -> None:
        columns = self._columns()
        if self.type == ".csv":
            import csv

            writer = csv.DictWriter(self._handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self._rows)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({column: [row.get(column) for row in self._rows] for column in columns})
        pq.write_table(table, self._handle)

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            if self.array:
                self._handle.write("\n]\n" if self.count else "]\n")
            elif self.type in (".csv", ".parquet"):
                self._finish_tabular()
        if self.gz:
            self._handle.close()  # flushes the gzip trailer into the raw temp file
        self._context.__exit__(*exc)


class TabularError(ValueError):
    """A record that a flat table (CSV) cannot hold without losing its structure."""


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as a CSV row (``meta`` as one JSON cell); ``TabularError`` for any other nested value.

    Public so a worker can refuse what a CSV output cannot hold before the
    record reaches the process that writes the file.
    """
    if isinstance(record.get("meta"), dict):  # thresher's own scores and provenance: one JSON cell
        record = {**record, "meta": json.dumps(record["meta"], ensure_ascii=False)}
    nested = next((key for key, value in record.items() if isinstance(value, (dict, list))), None)
    if nested is not None:
        raise TabularError(f"csv holds single-turn data only; field {nested!r} is nested")
    return record


class AppendJsonl:
    """An append-only JSONL file, flushed line by line: the one non-atomic writer.

    Resumable jobs (synthesis against a paid API) must keep every finished
    result even if the process is killed, so they cannot write to a temporary
    file renamed at the end. Instead each line is appended and flushed as it
    arrives; a line cut short by a kill is trimmed when the file is reopened,
    so the next append never glues onto half a record.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        check_output(self.path)
        self.count = 0
        self._handle: IO[str] | None = None
        self._lock = OutputLock(self.path)

    def __enter__(self) -> AppendJsonl:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock.__enter__()  # two runs appending to one file would interleave and duplicate
        trim_partial_line(self.path)
        self._handle = open(self.path, "a", encoding="utf-8")
        return self

    def write(self, record: Any) -> None:
        """Append one record and flush it to the operating system."""
        self.write_all([record])

    def write_all(self, records: list[Any]) -> None:
        """Append records in one write, so a kill cannot split a job's records across runs."""
        assert self._handle is not None, "use AppendJsonl as a context manager"
        if records:
            self._handle.write("".join(dumps(record) + "\n" for record in records))
            self._handle.flush()
            self.count += len(records)

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._lock.__exit__(*exc)


def trim_partial_line(path: Path) -> None:
    """Cut ``path`` back to its last complete line (a kill can leave half a line)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        handle.truncate(data.rfind(b"\n") + 1)


def read_jsonl_objects(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of an append-only JSONL file (see ``AppendJsonl``); none if it does not exist.

    Only a cut-off last line (no final newline: a kill mid-write) is skipped;
    a resumed run rewrites that record. A bad line anywhere else means the
    file was damaged or is not ours, and trusting the rest would silently
    repeat or lose work, so it raises an ``InputError`` naming file and line.
    Blank lines are skipped.
    """
    p = Path(path)
    if not p.exists():
        return
    with open(p, "rb") as handle:  # bytes: a kill can also cut a character in half
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, too deep
                if not line.endswith(b"\n"):
                    return  # only the last line lacks a newline: cut short by a kill
                reason = (exc.msg if isinstance(exc, json.JSONDecodeError)
                          else "nested too deeply" if isinstance(exc, RecursionError) else "bytes that are not UTF-8")
                raise InputError(str(p), f"not a JSON line ({reason}); fix or delete this line", number) from None
            if not isinstance(value, dict):
                raise InputError(str(p), f"expected a JSON object, got {json_type_name(value)}", number)
            yield value
