"""Scale benchmark: ``thresher dedup`` on the local engine and on Ray, same corpus, same machine.

Generates a corpus of English and Chinese documents with planted near
duplicates whose truth is known (``bench_dedup.build_corpus``: copies with
word or character edits plus case, width, spacing and punctuation noise, and
hard negatives), writes it as a folder of JSONL shards, and runs, for each
size and engine, ``thresher dedup CORPUS/ -o OUT/`` (a folder in, parts out)
in a fresh process. It reports:

- seconds of the stage (the stage's own clock: after the engine is up) and wall
  seconds of the whole command (a local Ray runtime's start-up included);
- documents per second, peak memory of the driver and of the largest worker;
- precision, recall and F1 per language against the planted truth, and
  whether the Ray engine kept exactly the records the local engine kept;
- the Ray engine's time over the local engine's on this machine (its overhead);
- how time grows with the corpus (10x the documents: ideally 10x the seconds);
- from the Ray run's phases, how the work would spread over N machines.

    python benchmarks/bench_scale.py --records 20000             # a quick look
    python benchmarks/bench_scale.py --records 100000 1000000    # the README's figures (an idle machine, ~24 GB)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_dedup import DEFAULT_PEER, build_corpus, scores

ENGINES = ("local", "ray")


def write_shards(texts: list[str], folder: Path, shards: int) -> list[Path]:
    """The corpus as ``shards`` JSONL files, in order (a crawl's part files)."""
    folder.mkdir(parents=True)
    per = -(-len(texts) // shards)
    paths = []
    for shard in range(shards):
        path = folder / f"part-{shard:05d}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for text in texts[shard * per : (shard + 1) * per]:
                handle.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


def removed_indices(removed: Path, shards: list[Path], per_shard: int) -> set[int]:
    """Corpus positions of the removed records: each removed line names its file and line."""
    number = {str(path): i for i, path in enumerate(shards)}
    found = set()
    for part in sorted(removed.glob("part-*.jsonl.gz")):
        for line in gzip.decompress(part.read_bytes()).decode("utf-8").splitlines():
            entry = json.loads(line)
            found.add(number[entry["file"]] * per_shard + entry["line"] - 1)
    return found


def run_engine(engine: str, corpus: Path, out: Path, args: argparse.Namespace) -> dict:
    """One ``thresher dedup`` in a fresh process; its stats, with the command's wall seconds."""
    exe = Path(sys.executable).with_name("thresher")
    command = [str(exe), "dedup", str(corpus), "-o", f"{out}/", "--threshold", str(args.threshold),
               "--workers", str(args.workers), "--engine", engine]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "RAY_DEDUP_LOGS": "1"})
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    stats = json.loads(out.with_name(f"{out.name}.stats.json").read_text())
    return {**stats, "wall": wall}


def measure(records: int, args: argparse.Namespace, work: Path) -> dict[str, dict]:
    corpus = build_corpus(argparse.Namespace(**{**vars(args), "records": records}))
    truth = corpus.truth()
    shards = write_shards(corpus.texts, work / "corpus", args.shards)
    per_shard = -(-len(corpus.texts) // args.shards)
    corpus.texts.clear()  # the scores need languages and clusters only; free the text before the runs
    results: dict[str, dict] = {}
    kept_sets = {}
    for engine in args.engines:
        stats = run_engine(engine, work / "corpus", work / f"out-{engine}", args)
        removed = removed_indices(work / f"out-{engine}.removed", shards, per_shard)
        kept_sets[engine] = removed
        results[engine] = {"stats": stats, "scores": scores(removed, corpus, truth)}
    results["planted"] = {"duplicates": len(truth), "identical": len({frozenset(s) for s in kept_sets.values()}) == 1}
    return results


def report(size: int, results: dict[str, dict]) -> None:
    planted = results["planted"]
    print(f"\n{size:,} documents ({planted['duplicates']:,} planted duplicates); "
          f"engines removed {'the same' if planted['identical'] else 'DIFFERENT'} records")
    print(f"{'engine':8}{'stage s':>9}{'wall s':>9}{'docs/s':>9}{'main MiB':>10}{'worker MiB':>11}"
          f"{'F1 en':>8}{'F1 zh':>8}  phases (s)")
    for engine in ENGINES:
        if engine not in results:
            continue
        stats, score = results[engine]["stats"], results[engine]["scores"]
        memory = stats["peak_memory_mb"]
        phases = ", ".join(f"{k} {v:.1f}" for k, v in stats["phase_seconds"].items())
        print(f"{engine:8}{stats['seconds']:>9.1f}{stats['wall']:>9.1f}{stats['in'] / stats['seconds']:>9,.0f}"
              f"{memory['main']:>10,.0f}{memory['workers']:>11,.0f}{score['en']['f1']:>8.4f}{score['zh']['f1']:>8.4f}"
              f"  {phases}")
    if "local" in results and "ray" in results:
        ratio = results["ray"]["stats"]["seconds"] / results["local"]["stats"]["seconds"]
        wall = results["ray"]["stats"]["wall"] / results["local"]["stats"]["wall"]
        print(f"ray / local on this machine: {ratio:.2f}x the stage's seconds, {wall:.2f}x wall "
              f"(target <= 1.5x); {results['ray']['stats']['partitions']} partitions, "
              f"{results['ray']['stats']['label_rounds']} label-propagation rounds")


def spread(results: dict[str, dict], workers: int) -> None:
    """How the Ray run's phases would spread over N machines of ``workers`` cores each."""
    stats = results["ray"]["stats"]
    phases = stats["phase_seconds"]
    parallel = phases.get("features", 0) + phases.get("write", 0) + phases.get("lsh", 0) + phases.get("decide", 0)
    rounds = phases.get("components", 0)
    print(f"\nspreading the {stats['in']:,}-document Ray run: features, LSH/verify, decide and write "
          f"({parallel:.1f} s) are maps over pieces and shuffle partitions, each sized by the input, so they "
          f"divide by the number of machines; label propagation ({rounds:.1f} s, {stats['label_rounds']} rounds) "
          f"touches only records with a near duplicate; the driver holds handles and per-piece counts only.")
    for machines in (1, 4, 16, 64):
        estimate = parallel / machines + rounds
        print(f"  {machines:>3} machines x {workers} cores: ~{estimate:,.1f} s "
              f"(~{stats['in'] / estimate:,.0f} docs/s), if the input is cut into at least {machines * workers} "
              f"pieces and the network carries ~{0.6 * stats['in'] / machines / 1e3:,.0f} MB of keys and "
              f"signatures per machine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="corpus sizes, smallest first (default 100000 1000000)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--workers", type=int, default=2, help="processes (local) or CPUs (Ray) (default 2)")
    parser.add_argument("--shards", type=int, default=8, help="JSONL files the corpus is written as (default 8)")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--dup-fraction", type=float, default=0.25)
    parser.add_argument("--dup-rates-en", type=float, nargs="+", default=[0.0, 0.005, 0.01])
    parser.add_argument("--dup-rates-zh", type=float, nargs="+", default=[0.0, 0.01, 0.02])
    parser.add_argument("--negative-fraction", type=float, default=0.1)
    parser.add_argument("--negative-rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer-data", type=Path, default=DEFAULT_PEER)
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.workers} workers; "
          f"threshold {args.threshold}; sizes {', '.join(f'{n:,}' for n in args.records)}")
    everything: dict[int, dict] = {}
    for records in sorted(args.records):
        with tempfile.TemporaryDirectory() as tmp:
            everything[records] = measure(records, args, Path(tmp))
        report(records, everything[records])
    sizes = sorted(everything)
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        for engine in args.engines:
            growth = everything[large][engine]["stats"]["seconds"] / everything[small][engine]["stats"]["seconds"]
            print(f"{engine}: {large // small}x the documents took {growth:.1f}x the time "
                  f"({growth / (large / small):.2f} of linear)")
    if "ray" in args.engines:
        spread(everything[sizes[-1]], args.workers)
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in everything.items()}, indent=2))


if __name__ == "__main__":
    main()
