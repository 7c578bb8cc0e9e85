"""Validation speed against bare JSON parsing, measured in the same run.

Generates mixed records (alpaca, sharegpt, messages, TRL preference, with
Chinese and English text and a few invalid ones) into a JSONL file, then times
(1) a bare ``json.loads`` loop over the file and (2) ``validate_paths``, the
code path of ``thresher validate``. The figure is the ratio: validation
throughput as a fraction of bare parsing throughput (aim: >= 1/3).

    python benchmarks/bench_validate.py [--records 200000] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from thresher.curate.engines import usable_cores
from thresher.curate.engines.local import LocalEngine
from thresher.curate.validate import validate_paths

EN = "the model data training answer question language user assistant helps with many tasks quickly and well".split()
ZH = "我是一个人工智能助手可以回答问题帮助用户完成任务数据训练模型语言理解生成"


def generate(path: Path, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)

    def en(n: int) -> str:
        return " ".join(rng.choice(EN) for _ in range(n))

    def zh(n: int) -> str:
        return "".join(rng.choice(ZH) for _ in range(n))

    with open(path, "w", encoding="utf-8") as handle:
        for i in range(count):
            shape = i % 4
            if shape == 0:
                record = {"instruction": en(12), "input": "", "output": en(rng.randint(20, 80))}
            elif shape == 1:
                record = {"conversations": [{"from": "human", "value": zh(20)}, {"from": "gpt", "value": zh(rng.randint(40, 120))}]}
            elif shape == 2:
                record = {"messages": [{"role": "system", "content": "Be concise."}, {"role": "user", "content": en(15)},
                                       {"role": "assistant", "content": en(rng.randint(20, 80))}]}
            else:
                record = {"prompt": en(10), "chosen": en(30), "rejected": en(25)}
            if i % 1000 == 999:
                record = {"instruction": en(5), "output": {"oops": True}}  # the xtuner-style type bug
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=usable_cores())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        generate(path, args.records)
        size_mb = path.stat().st_size / 1e6

        start = time.perf_counter()
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                json.loads(line)
        bare = time.perf_counter() - start

        start = time.perf_counter()
        summary = validate_paths([str(path)], engine=LocalEngine(args.workers))
        checked = time.perf_counter() - start

    assert summary.total == args.records
    print(f"records: {args.records:,} ({size_mb:.1f} MB), invalid found: {summary.invalid:,}, workers: {args.workers}")
    print(f"json.loads loop      : {args.records / bare:>12,.0f} records/s")
    print(f"thresher validate    : {args.records / checked:>12,.0f} records/s")
    print(f"ratio validate/parse : {bare / checked:.2f}  (aim >= 0.33)")


if __name__ == "__main__":
    main()
