"""Sharded output: one part file per input piece, written by whichever worker read the piece.

``-o OUT/`` (a trailing slash, an existing folder, or a name without a file
suffix) asks a keep-or-drop stage for sharded output::

    OUT/part-00000.jsonl.gz          kept records of piece 0, in the shape they came in
    OUT.removed/part-00000.jsonl.gz  its removed records, each with reason, file and line
    OUT.stats/part-00000.json        its counts (in, kept, removed by reason)
    OUT.stats.json                   the sum over every part, with in == kept + removed checked

Each part is written to a temporary name and renamed when complete, and a
part's stats file is written last; a worker that fails or is killed leaves
no part behind, and the retried piece writes the same part again, so output
is never duplicated. Part numbers are piece numbers: the same input gives the
same parts whatever the engine or the number of workers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from thresher.curate.errors import ThresherError

PART_SUFFIX = ".jsonl.gz"
_PART = re.compile(r"part-(\d{5,})\.(?:jsonl\.gz|json)$")


def is_folder_output(output: str | os.PathLike[str]) -> bool:
    """Whether ``-o`` names a folder of parts rather than one file."""
    text = str(output)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or not Path(text).suffix


@dataclass(frozen=True)
class Parts:
    """The folders and files one sharded stage run writes."""

    kept: Path
    removed: Path
    stats: Path

    @classmethod
    def of(cls, output: str | os.PathLike[str], removed: str | None = None, stats: str | None = None,
           removed_name: str = "removed") -> Parts:
        """``OUT/``'s sidecars: ``OUT.removed/`` (or ``--removed DIR``) and ``OUT.stats.json`` (or ``--stats``)."""
        kept = Path(str(output).rstrip("/" + os.sep) or ".")
        return cls(kept, Path(removed) if removed else kept.with_name(f"{kept.name}.{removed_name}"),
                   Path(stats) if stats else kept.with_name(f"{kept.name}.stats.json"))

    @property
    def part_stats(self) -> Path:
        """The folder of per-part stats: the stats file's name without ``.json``."""
        return self.stats.with_name(self.stats.name.removesuffix(".json") + ("" if self.stats.suffix else ".parts"))

    def kept_part(self, index: int) -> Path:
        return self.kept / f"part-{index:05d}{PART_SUFFIX}"

    def removed_part(self, index: int) -> Path:
        return self.removed / f"part-{index:05d}{PART_SUFFIX}"

    def stats_part(self, index: int) -> Path:
        return self.part_stats / f"part-{index:05d}.json"

    def check_inputs(self, inputs: list[str]) -> None:
        """Refuse to write parts into a folder that holds an input: a part could replace it."""
        folders = {self.kept.resolve(), self.removed.resolve(), self.part_stats.resolve()}
        for path in inputs:
            resolved = Path(path).resolve()
            if any(folder == resolved or folder in resolved.parents for folder in folders):
                raise ThresherError(f"{path}: is inside the output folder {self.kept}; choose another -o")

    def remove_stale(self, count: int) -> None:
        """Delete parts numbered ``count`` and above: left by an earlier run over more pieces."""
        for folder in (self.kept, self.removed, self.part_stats):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                match = _PART.match(path.name)
                if match and int(match.group(1)) >= count:
                    path.unlink()
