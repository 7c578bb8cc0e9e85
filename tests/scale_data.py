"""Inputs for the engine tests (``test_engines.py`` runs them locally, ``test_ray.py`` on Ray): the
same planted-duplicate and dirty-record corpora, spread over the file types a sharded corpus uses."""

from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path
from typing import Any

from test_dedup import EN, EN_OTHER, ZH, change_char, corpus
from test_filter_cli import BLANK, GOOD_EN, GOOD_ZH, PLACEHOLDER, REFUSAL

#: Stats keys that say how a run went, not what it decided: they differ between engines and runs.
RUN_KEYS = {"seconds", "records_per_second", "phase_seconds", "peak_memory_mb", "workers", "engine", "partitions",
            "label_rounds", "output", "removed_file", "stats_file"}


def decided(stats: dict[str, Any]) -> dict[str, Any]:
    """A stats object without the figures of how it ran."""
    return {key: value for key, value in stats.items() if key not in RUN_KEYS}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows as JSON lines; a string row is written as is (a broken line)."""
    text = "".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def planted(folder: Path, records: int = 240, seed: int = 5) -> tuple[list[Path], Path]:
    """Two input files and an ``--against`` file: the dedup tests' corpus plus random documents with
    planted exact and near copies (English and Chinese) across files and pieces."""
    first, _ = corpus(folder)  # exact, near, Chinese-aware, a broken line, an unknown shape
    rng = random.Random(seed)
    words = EN.split() + EN_OTHER.split()
    rows: list[dict[str, Any]] = []
    for i in range(records):
        if rows and rng.random() < 0.35:
            source = rng.choice(rows)["text"]
            if rng.random() < 0.5:
                text = source.upper()
            elif source[0] in "".join(ZH):
                text = change_char(source, rng.randrange(len(source)))
            else:
                tokens = source.split()
                tokens[rng.randrange(len(tokens))] = rng.choice(words)
                text = " ".join(tokens)
        elif i % 4 == 0:
            text = "".join(rng.sample(ZH, 2))
        else:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(12, 40)))
        rows.append({"text": text, "score": rng.random()})
    second = write_jsonl(folder / "second.jsonl", rows[: records * 3 // 4])
    against = write_jsonl(folder / "against.jsonl", [*rows[records * 3 // 4 :], {"text": ZH[0]}])
    return [first, second], against


def dirty(folder: Path) -> tuple[list[Path], dict[tuple[str, int], str]]:
    """The filter tests' records (clean, refusal, placeholder, blank, broken) over JSONL, .jsonl.gz, .json
    and Parquet (two row groups), with the shipped general sample for volume; and the reason each planted
    bad row must be removed for, by (file, line)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sample = Path(__file__).resolve().parents[1] / "examples" / "general_sample.jsonl"
    general = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines()]
    reasons = {json.dumps(REFUSAL): "refusal", json.dumps(PLACEHOLDER): "placeholder", json.dumps(BLANK): "invalid"}
    bad = [REFUSAL, PLACEHOLDER, BLANK]
    mixed: list[Any] = []
    for i, row in enumerate(general):
        mixed.append(row)
        if i % 9 == 0:
            mixed.append(bad[i % len(bad)])
    mixed.insert(17, "{broken json")
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        folder / "a.jsonl": mixed,
        folder / "b.jsonl.gz": [GOOD_EN, REFUSAL, GOOD_ZH, PLACEHOLDER] * 5,
        folder / "c.json": [GOOD_ZH, BLANK, GOOD_EN],
        folder / "d.parquet": [GOOD_EN, REFUSAL, GOOD_ZH, GOOD_EN, PLACEHOLDER, GOOD_ZH],
    }
    planted_rows = {}
    for path, rows in files.items():
        if path.suffix == ".parquet":
            pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=3)
        elif path.suffix == ".json":
            path.write_text("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n", encoding="utf-8")
        else:
            write_jsonl(path, rows)
        first = 2 if path.suffix == ".json" else 1
        for number, row in enumerate(rows, first):
            reason = "invalid" if isinstance(row, str) else reasons.get(json.dumps(row))
            if reason:
                planted_rows[(str(path), number)] = reason
    return list(files), planted_rows


def filter_args(paths: list[Path], output: Path, *extra: str) -> argparse.Namespace:
    """``thresher filter``'s parsed command line."""
    from thresher.curate.filter.command import configure

    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args([*map(str, paths), "-o", str(output), *extra])


def lines(path: Path) -> list[str]:
    """The lines of a JSONL file, or of every part of a parts folder in order."""
    if path.is_dir():
        return [line for part in sorted(path.glob("part-*.jsonl.gz"))
                for line in gzip.decompress(part.read_bytes()).decode("utf-8").splitlines()]
    return path.read_text(encoding="utf-8").splitlines()
