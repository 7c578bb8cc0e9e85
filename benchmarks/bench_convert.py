"""Convert throughput: thresher's validated alpaca -> messages path against two baselines.

Baselines, measured in the same run on the same generated file:
- ``plain``: json.loads per line, reshape the dict, json.dumps (no validation);
- ``datasets``: HF ``datasets`` json loading plus ``map`` (how LLaMA-Factory converts).

thresher does more (validates every record, names bad fields, writes rejects
and stats), so the ratio shows what that safety costs.

    .venv/bin/python benchmarks/bench_convert.py            # 20,000 records
    .venv/bin/python benchmarks/bench_convert.py --records 200000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


def generate(path: Path, count: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(count):
            row = {"instruction": f"Question {i}: explain item {i % 97}", "input": "" if i % 3 else f"context {i}",
                   "output": f"Answer {i} " * 20, "system": "You are helpful." if i % 2 else ""}
            if i % 5 == 0:
                row["history"] = [[f"earlier {i}", f"reply {i}"]]
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def to_messages(row: dict) -> dict:
    messages = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    for query, answer in row.get("history") or []:
        messages += [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
    user = f"{row['instruction']}\n{row['input']}" if row.get("input") else row["instruction"]
    return {"messages": messages + [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]}


def plain(src: Path, out: Path) -> None:
    with open(src, encoding="utf-8") as rows, open(out, "w", encoding="utf-8") as handle:
        for line in rows:
            handle.write(json.dumps(to_messages(json.loads(line)), ensure_ascii=False) + "\n")


def hf_datasets(src: Path, out: Path, cache: Path) -> None:
    from datasets import disable_progress_bars, load_dataset

    disable_progress_bars()
    data = load_dataset("json", data_files=str(src), split="train", cache_dir=str(cache))
    data = data.map(to_messages, remove_columns=data.column_names, load_from_cache_file=False)
    data.to_json(str(out), force_ascii=False)


def thresher(src: Path, out: Path) -> None:
    from thresher.curate.convert import convert_paths
    from thresher.curate.engines.local import LocalEngine

    args = SimpleNamespace(paths=[str(src)], output=str(out), to="messages", rejects=None, fmt=None, system=None,
                           min_margin=0.0, label_template=None, allow_placeholders=False, last_turn=False)
    stage, _, _ = convert_paths(args, LocalEngine(1))
    assert stage.kept == stage.records_in, stage.stats()


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / "alpaca.jsonl"
        generate(src, args.records)
        times = {
            "plain (no validation)": timed(plain, src, root / "plain.jsonl"),
            "datasets load+map": timed(hf_datasets, src, root / "hf.jsonl", root / "cache"),
            "thresher convert": timed(thresher, src, root / "thresher.jsonl"),
        }
    ours = times["thresher convert"]
    print(f"alpaca -> messages, {args.records:,} records")
    for name, seconds in times.items():
        print(f"  {name:24s} {seconds:7.2f} s  {args.records / seconds:>10,.0f} rec/s  thresher/this = {ours / seconds:.2f}x")


if __name__ == "__main__":
    main()
