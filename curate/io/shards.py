"""Inputs at scale: folders and globs of record files, cut into pieces that workers read alone.

A corpus arrives as many files (``crawl/part-*.jsonl.gz``, a folder of
Parquet shards) or as one big JSONL file. ``expand_inputs`` turns folders
and glob patterns into the files they hold, in a stable (sorted) order, and
``plan`` cuts every file into ``Piece``\\ s: line-aligned byte ranges of a
plain JSONL file (as ``validate`` always did), row groups of a Parquet
file, and whole files for everything that cannot be cut (gzip, .json, CSV,
xlsx, datasets folders). A piece names its file and its first line, so every
record still knows where it came from, whichever worker or machine reads it.

Pieces are numbered in input order; the engines return results in that order
and sharded outputs are numbered by piece (``part-00007`` holds what piece 7
kept), so a result never depends on the number of workers.
"""

from __future__ import annotations

import glob
import gzip
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from thresher.curate.errors import InputError
from thresher.curate.io.readers import (
    SUFFIXES, Row, Shard, file_type, is_datasets_folder, jsonl_shards, parquet_row_groups, read_jsonl_shard, read_parquet_group, read_rows,
)

#: Bytes of plain JSONL per piece: large enough to amortise a task, small enough to balance cores.
SHARD_BYTES = 4 << 20
_PATTERN_CHARS = frozenset("*?[")


def is_record_file(path: Path) -> bool:
    """A file ``read_rows`` understands, not hidden (a writer's ``.name.tmp``) and not ``_``-prefixed (``_SUCCESS``)."""
    name = path.name.lower()
    if name.startswith((".", "_")):
        return False
    name = name.removesuffix(".gz")
    return any(name.endswith(suffix) for suffix in SUFFIXES)


def expand_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Every record file named by ``paths``: files as given, folders and glob patterns expanded (sorted).

    A folder saved by ``datasets`` is one input, as before; any other folder
    stands for the record files under it (recursively). A pattern or folder
    that matches nothing is an ``InputError`` rather than a silent empty run.
    """
    files: list[str] = []
    for item in paths:
        text = str(item)
        path = Path(text)
        if not path.exists() and _PATTERN_CHARS & set(text):
            found = sorted(m for m in glob.glob(text, recursive=True) if Path(m).is_file() and is_record_file(Path(m)))
            if not found:
                raise InputError(text, "no record files match this pattern")
            files += found
        elif path.is_dir() and not is_datasets_folder(path):
            found = sorted(str(f) for f in path.rglob("*") if f.is_file() and is_record_file(f))
            if not found:
                raise InputError(text, "folder holds no record files (.jsonl, .json, .csv, .tsv, .xlsx, .parquet, "
                                       "optionally .gz) and was not written by datasets' save_to_disk")
            files += found
        else:
            files.append(text)
    return files


@dataclass(frozen=True, slots=True)
class Piece:
    """One unit of work: a whole file, a byte range of a plain JSONL file, or a Parquet row group."""

    index: int  # position among all pieces of the run, in input order
    path: str
    file: int  # position of ``path`` among the run's files
    shard: Shard | None = None
    row_group: int | None = None
    first_line: int = 1  # row group: the number of its first row in the file
    size: int = 0  # bytes (for a row group, the file's share), to decide whether processes pay off


def plan(paths: Iterable[str], shard_bytes: int | None = None) -> list[Piece]:
    """The pieces of ``paths`` (already expanded), in input order; every file has at least one.

    ``shard_bytes``: plain JSONL bytes per piece (default ``SHARD_BYTES``, read
    when called).

    A file that cannot be cut (or read at all) is one piece, so reading it
    raises its ``InputError`` where the stage can report it.
    """
    pieces: list[Piece] = []
    for number, path in enumerate(paths):
        parts: list[Piece] = []
        try:
            suffix, gz = file_type(path)
            size = Path(path).stat().st_size if suffix != "datasets" else 0
            if (suffix, gz) == (".jsonl", False):
                parts = [Piece(0, path, number, shard=s, first_line=s.first_line, size=s.length)
                         for s in jsonl_shards(path, shard_bytes or SHARD_BYTES)]
            elif (suffix, gz) == (".parquet", False):
                groups = parquet_row_groups(path)
                total = max(1, sum(groups))
                first = 1
                for group, rows in enumerate(groups):
                    parts.append(Piece(0, path, number, row_group=group, first_line=first, size=size * rows // total))
                    first += rows
        except (InputError, OSError, ValueError):
            parts, size = [], 0
        if not parts:
            parts = [Piece(0, path, number, size=size)]
        for part in parts:
            pieces.append(Piece(len(pieces), part.path, part.file, part.shard, part.row_group, part.first_line, part.size))
    return pieces


def read_piece(piece: Piece) -> Iterator[Row]:
    """The rows of one piece, each with its file and line, exactly as ``read_rows`` numbers them."""
    if piece.shard is None and piece.row_group is None:
        yield from read_rows(piece.path)
        return
    try:
        if piece.shard is not None:
            yield from read_jsonl_shard(piece.path, piece.shard)
        else:
            yield from read_parquet_group(piece.path, piece.row_group, piece.first_line)  # type: ignore[arg-type]
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(piece.path, f"cannot read: {exc}") from None
