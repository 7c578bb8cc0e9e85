"""Records per second of ``thresher filter``'s default heuristic rules, against a json.loads-only pass.

Both passes run in the same process on the same generated JSONL file: mixed
Chinese and English records in alpaca, sharegpt and OpenAI-messages shapes,
random sentences from a fixed vocabulary; about one in ten of them dirty (refusals, loops, placeholders, mojibake,
truncation). The filter pass is the whole stage: read, map to the canonical
record, every default rule, write kept/removed/stats.

    python benchmarks/bench_filter.py                  # 20,000 records (quick)
    python benchmarks/bench_filter.py --records 100000 # the issue's size
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

EN_WORDS = ("river light energy leaves carbon oxygen python list method revolution europe politics exercise "
            "sleep mood heart risk disease garden teacher market winter music library bridge ocean forest").split()
EN_GLUE = ("the", "a", "of", "to", "and", "with", "in", "that", "is", "was", "for", "on")
ZH_CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"


def english(rng: random.Random) -> str:
    words = [rng.choice(EN_WORDS if i % 2 else EN_GLUE) for i in range(rng.randint(8, 16))]
    return " ".join(words).capitalize() + "."


def chinese(rng: random.Random) -> str:
    return "".join(rng.choice(ZH_CHARS) for _ in range(rng.randint(10, 30))) + "。"


DIRTY = [
    "As an AI language model, I cannot help with that.",
    "作为一个AI语言模型，我无法回答这个问题。",
    "I love you so much my dear. " * 20,
    "我是{{name}}，由{{author}}开发。",
    "The cafÃ© served crÃ¨me brÃ»lÃ©e.",
    "Photosynthesis is important because, without it, the plants would,",
]


def make_record(rng: random.Random) -> dict:
    zh = rng.random() < 0.5
    answer = ("" if zh else " ").join((chinese if zh else english)(rng) for _ in range(rng.randint(2, 12)))
    if rng.random() < 0.1:
        answer = rng.choice(DIRTY)
    question = "请解释一下这个话题。" if zh else "Please explain this topic."
    shape = rng.random()
    if shape < 0.6:
        return {"instruction": question, "input": "", "output": answer}
    if shape < 0.85:
        return {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="also time the filter on this many processes (default: the CPU count)")
    args = parser.parse_args()

    from thresher.curate.filter.command import configure, filter_paths

    command = argparse.ArgumentParser()
    configure(command)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "mixed.jsonl"
        with source.open("w", encoding="utf-8") as handle:
            for _ in range(args.records):
                handle.write(json.dumps(make_record(rng), ensure_ascii=False) + "\n")

        start, cpu = time.perf_counter(), time.process_time()
        with source.open(encoding="utf-8") as handle:
            parsed = sum(1 for line in handle if json.loads(line))
        baseline, baseline_cpu = time.perf_counter() - start, time.process_time() - cpu
        assert parsed == args.records

        timings = {}
        for workers in sorted({1, args.workers}):
            out = Path(tmp) / f"kept{workers}.jsonl"
            start, cpu = time.perf_counter(), time.process_time()
            stats = filter_paths(command.parse_args([str(source), "-o", str(out), "--workers", str(workers)]))
            # CPU seconds of this process and, for a pool, of its children: on a shared machine wall time
            # measures the neighbours as much as the code.
            children = os.times().children_user + os.times().children_system
            timings[workers] = (time.perf_counter() - start, time.process_time() - cpu + children)

    print(f"records: {args.records:,} (mixed zh/en; alpaca, sharegpt, messages)")
    rows = [("json.loads only", baseline, baseline_cpu)]
    rows += [(f"filter, {w} worker{'s' if w > 1 else ''}", wall, used) for w, (wall, used) in timings.items()]
    for name, wall, used in rows:
        print(f"{name:<18}: {args.records / wall:>9,.0f} records/s wall ({wall:.2f} s), "
              f"{args.records / used:>9,.0f} records per CPU-second")
    one = timings[1]
    print(f"filter / json.loads: {baseline / one[0]:.4f}x wall, {baseline_cpu / one[1]:.4f}x CPU")
    if args.workers > 1:
        wall = timings[args.workers][0]
        print(f"{args.workers} workers / 1 worker: {one[0] / wall:.2f}x faster (wall; the ideal is {args.workers}x)")
    print(f"kept {stats['kept']:,}, removed {stats['removed_total']:,}: {stats['removed']}")


if __name__ == "__main__":
    main()
