"""Benchmark ``thresher dedup`` against a straightforward datasketch baseline.

Builds a corpus from real text (LLaMA-Factory's English ``c4_demo.jsonl`` and
Chinese ``alpaca_zh_demo.json`` when ``--peer-data`` has them; generated text
otherwise), plants near duplicates with known edit rates and hard negatives,
then reports in one run, per language and for both tools:

- precision, recall and F1 of duplicate detection against the planted truth
  (a record should be removed iff an earlier record of its cluster exists);
- records per second (wall clock of the whole command) and peak memory.

The baseline is what the datasketch README shows: lower-cased whitespace
words as 5-gram shingles, one ``MinHash.update`` per shingle, and a
``MinHashLSH`` index queried before each insert. A final section times the
signature step alone: thresher's numpy path against ``MinHash.bulk``.

    python benchmarks/bench_dedup.py                    # ~10,000 records, a minute or two
    python benchmarks/bench_dedup.py --records 100000   # the figure quoted in the README
    python benchmarks/bench_dedup.py --similarity-table # Jaccard by edit rate and n-gram size

Corpus construction. Each original is 4-10 random sentences of one language
(so originals share sentences now and then, as real corpora do). Planted
copies change each token (word, or character for Chinese) with the given
probability (substitute, delete or insert, evenly) and add surface noise
(case, width, spacing, punctuation). Copies at the ``--dup-rates`` are true
duplicates; copies at ``--negative-rate`` and "same template" records (half
the sentences of an original, half new) are planted hard negatives.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PEER = ROOT.parent / "shared" / "peer-data" / "llamafactory"
LANGUAGES = ("en", "zh")


# ---------------------------------------------------------------- corpus


def sentence_pools(peer: Path, rng: random.Random) -> tuple[dict[str, list[str]], str]:
    """English and Chinese sentences from the peer files, or generated ones."""
    c4, zh = peer / "c4_demo.jsonl", peer / "alpaca_zh_demo.json"
    if c4.exists() and zh.exists():
        english = []
        for line in c4.read_text(encoding="utf-8").splitlines():
            english += re.split(r"(?<=[.!?])\s+", json.loads(line)["text"])
        chinese = []
        for record in json.loads(zh.read_text(encoding="utf-8")):
            for field in ("instruction", "input", "output"):
                chinese += re.findall(r"[^。！？\n]+[。！？]?", record.get(field) or "")
        pools = {
            "en": sorted({s.strip() for s in english if len(s.split()) >= 6}),
            "zh": sorted({s.strip() for s in chinese if len(s.strip()) >= 10}),
        }
        return pools, f"real text from {peer}"
    syllables = ["ka", "lo", "mi", "ten", "ra", "sun", "der", "vo", "pli", "na", "gus", "ber"]
    words = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(3000)})
    hanzi = [chr(c) for c in range(0x4E00, 0x4E00 + 2500)]
    pools = {
        "en": [" ".join(rng.choices(words, k=rng.randint(8, 25))).capitalize() + "." for _ in range(6000)],
        "zh": ["".join(rng.choices(hanzi, k=rng.randint(10, 30))) + "。" for _ in range(6000)],
    }
    return pools, "generated text (peer data not found)"


def tokens(text: str, language: str) -> list[str]:
    return text.split(" ") if language == "en" else list(text)


def join(parts: list[str], language: str) -> str:
    return " ".join(parts) if language == "en" else "".join(parts)


def edit(text: str, language: str, rate: float, vocabulary: list[str], rng: random.Random) -> str:
    """Change each token with probability ``rate`` (substitute, delete, insert), then add surface noise."""
    out = []
    for token in tokens(text, language):
        if rng.random() >= rate:
            out.append(token)
            continue
        operation = rng.randrange(3)
        if operation == 0:
            out.append(rng.choice(vocabulary))
        elif operation == 2:
            out += [token, rng.choice(vocabulary)]
    return surface_noise(join(out, language), rng)


def surface_noise(text: str, rng: random.Random) -> str:
    """Changes exact dedup's normalisation removes: case, full width, spacing, punctuation."""
    choice = rng.randrange(4)
    if choice == 0:
        return text.upper()
    if choice == 1:
        return text.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})  # ASCII -> full width
    if choice == 2:
        return "  " + text.replace(" ", "   ") + "\n"
    return text + "!!"


@dataclass
class Corpus:
    texts: list[str]
    language: list[str]
    cluster: list[int]
    description: str

    def truth(self) -> set[int]:
        """Records that should be removed: an earlier record shares their cluster."""
        seen, removed = set(), set()
        for index, cluster in enumerate(self.cluster):
            if cluster in seen:
                removed.add(index)
            seen.add(cluster)
        return removed


def build_corpus(args: argparse.Namespace) -> Corpus:
    rng = random.Random(args.seed)
    pools, description = sentence_pools(args.peer_data, rng)
    vocab = {
        "en": sorted({w for s in pools["en"][:2000] for w in s.split()}),
        "zh": sorted({c for s in pools["zh"][:2000] for c in s if "\u4e00" <= c <= "\u9fff"}),
    }
    texts: list[str] = []
    language: list[str] = []
    cluster: list[int] = []
    originals: list[int] = []
    while len(texts) < args.records:
        roll = rng.random()
        if originals and roll < args.dup_fraction:
            source = rng.choice(originals)
            lang = language[source]
            rates = args.dup_rates_en if lang == "en" else args.dup_rates_zh
            texts.append(edit(texts[source], lang, rng.choice(rates), vocab[lang], rng))
            cluster.append(cluster[source])
        elif originals and roll < args.dup_fraction + args.negative_fraction:
            source = rng.choice(originals)
            lang = language[source]
            if rng.random() < 0.5:
                text = edit(texts[source], lang, args.negative_rate, vocab[lang], rng)
            else:  # same template: the first half of an original, then new sentences
                half = tokens(texts[source], lang)
                text = join(half[: len(half) // 2], lang) + (" " if lang == "en" else "")
                text += join(rng.sample(pools[lang], k=max(2, len(half) // 40 if lang == "en" else 3)), lang)
            texts.append(text)
            cluster.append(len(texts))
        else:
            lang = LANGUAGES[len(texts) % 2]
            texts.append(join(rng.sample(pools[lang], k=rng.randint(4, 10)), lang))
            originals.append(len(texts) - 1)
            cluster.append(len(texts))
        language.append(lang)
    return Corpus(texts, language, cluster, description)


# ---------------------------------------------------------------- the two contenders


def run_thresher(corpus_path: Path, work: Path, args: argparse.Namespace) -> tuple[set[int], float, float]:
    out = work / "thresher.jsonl"
    exe = Path(sys.executable).with_name("thresher")
    command = [str(exe), "dedup", str(corpus_path), "-o", str(out), "--threshold", str(args.threshold),
               "--workers", str(args.workers)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    stats = json.loads((work / "thresher.stats.json").read_text())
    removed = {json.loads(line)["line"] - 1 for line in (work / "thresher.removed.jsonl").open(encoding="utf-8")}
    memory = stats["peak_memory_mb"]["main"] + stats["peak_memory_mb"]["workers"] * stats["workers"]
    return removed, seconds, memory


def run_baseline(corpus_path: Path, args: argparse.Namespace) -> tuple[set[int], float, float]:
    command = [sys.executable, __file__, "--baseline-only", str(corpus_path), "--threshold", str(args.threshold)]
    start = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    report = json.loads(result.stdout)
    return set(report["removed"]), seconds, report["peak_memory_mb"]


def baseline_main(corpus_path: str, threshold: float) -> None:
    """The datasketch README way, one record at a time: prints removed indices and peak memory as JSON."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    removed = []
    with open(corpus_path, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            words = json.loads(line)["text"].lower().split()
            minhash = MinHash(num_perm=128)
            for i in range(max(1, len(words) - 4)):
                minhash.update(" ".join(words[i : i + 5]).encode("utf-8"))
            if lsh.query(minhash):
                removed.append(index)
            else:
                lsh.insert(index, minhash)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"removed": removed, "peak_memory_mb": peak}))


def signature_only(texts: list[str]) -> tuple[float, float]:
    """Seconds to sign ``texts`` (already shingled): thresher's numpy path vs ``MinHash.bulk``."""
    from datasketch import MinHash

    from thresher.curate.dedup import minhash
    from thresher.curate.dedup.shingles import Shingler

    values, counts = Shingler().hashes(texts)
    start = time.perf_counter()
    minhash.signatures(values, counts)
    numpy_seconds = time.perf_counter() - start
    ends = counts.cumsum()
    per_text = [values[e - c : e].tolist() for e, c in zip(ends, counts)]
    start = time.perf_counter()
    MinHash.bulk(per_text, num_perm=128, hashfunc=int)
    return numpy_seconds, time.perf_counter() - start


def similarity_table(args: argparse.Namespace, samples: int = 200) -> None:
    """Median Jaccard of a copy vs. its original by token edit rate and n-gram size (the README's table)."""
    from thresher.curate.dedup.minhash import jaccard
    from thresher.curate.dedup.shingles import Shingler

    rng = random.Random(args.seed)
    pools, description = sentence_pools(args.peer_data, rng)
    vocab = {
        "en": sorted({w for s in pools["en"][:2000] for w in s.split()}),
        "zh": sorted({c for s in pools["zh"][:2000] for c in s if "\u4e00" <= c <= "\u9fff"}),
    }
    rates = (0.005, 0.01, 0.02, 0.05)
    print(f"median Jaccard of a copy with each token edited at a rate, {samples} samples, {description}")
    print(f"{'':12}" + "".join(f"{r:>8.1%}" for r in rates) + f"{'<0.8 @1%':>10}{'unrelated max':>15}")
    for lang, sizes in (("en", (3, 5, 7)), ("zh", (2, 3, 5))):
        for n in sizes:
            shingler = Shingler(n, n)
            medians, below = [], 0.0
            for rate in rates:
                sims = []
                for _ in range(samples):
                    original = join(rng.sample(pools[lang], k=rng.randint(4, 10)), lang)
                    sets = shingler.shingle_sets([original, edit(original, lang, rate, vocab[lang], rng)])
                    sims.append(jaccard(*sets))
                medians.append(sorted(sims)[samples // 2])
                if rate == 0.01:
                    below = sum(x < 0.8 for x in sims) / samples
            unrelated = max(
                jaccard(*shingler.shingle_sets([join(rng.sample(pools[lang], k=6), lang) for _ in range(2)]))
                for _ in range(samples)
            )
            print(f"{lang + ' ' + str(n) + '-gram':12}" + "".join(f"{m:>8.2f}" for m in medians)
                  + f"{below:>10.1%}{unrelated:>15.2f}")


# ---------------------------------------------------------------- scoring and report


def scores(predicted: set[int], corpus: Corpus, truth: set[int]) -> dict[str, dict[str, float]]:
    out = {}
    for lang in LANGUAGES:
        mine = {i for i, x in enumerate(corpus.language) if x == lang}
        p, t = predicted & mine, truth & mine
        precision = len(p & t) / len(p) if p else 1.0
        recall = len(p & t) / len(t) if t else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[lang] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dup-fraction", type=float, default=0.25, help="share of records that are planted copies")
    parser.add_argument("--dup-rates-en", type=float, nargs="+", default=[0.0, 0.005, 0.01],
                        help="word edit rates of true English duplicates")
    parser.add_argument("--dup-rates-zh", type=float, nargs="+", default=[0.0, 0.01, 0.02],
                        help="character edit rates of true Chinese duplicates (a Chinese word is ~1.5-2 characters)")
    parser.add_argument("--negative-fraction", type=float, default=0.1, help="share of planted hard negatives")
    parser.add_argument("--negative-rate", type=float, default=0.3, help="token edit rate of hard negatives")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer-data", type=Path, default=DEFAULT_PEER)
    parser.add_argument("--skip-baseline", action="store_true", help="thresher only (no speed ratio)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--similarity-table", action="store_true",
                        help="only print median Jaccard by edit rate and n-gram size (for choosing settings)")
    parser.add_argument("--baseline-only", metavar="CORPUS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_only:
        baseline_main(args.baseline_only, args.threshold)
        return
    if args.similarity_table:
        similarity_table(args)
        return

    corpus = build_corpus(args)
    truth = corpus.truth()
    print(f"corpus: {len(corpus.texts):,} records from {corpus.description}; "
          f"{len(truth):,} planted duplicates; threshold {args.threshold}; {args.workers} workers; "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus_path = work / "corpus.jsonl"
        with corpus_path.open("w", encoding="utf-8") as handle:
            for text in corpus.texts:
                handle.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        contenders = [("thresher", lambda: run_thresher(corpus_path, work, args))]
        if not args.skip_baseline:
            contenders.append(("datasketch baseline", lambda: run_baseline(corpus_path, args)))
        for name, runner in contenders:
            removed, seconds, memory = runner()
            results[name] = {
                "scores": scores(removed, corpus, truth),
                "seconds": round(seconds, 2),
                "records_per_second": round(len(corpus.texts) / seconds, 1),
                "peak_memory_mb": round(memory, 1),
            }
    sample = corpus.texts[:2000]
    numpy_seconds, bulk_seconds = signature_only(sample)
    results["signatures only (2,000 records)"] = {
        "thresher numpy seconds": round(numpy_seconds, 3),
        "datasketch MinHash.bulk seconds": round(bulk_seconds, 3),
        "ratio": round(bulk_seconds / numpy_seconds, 1),
    }
    report(results)
    if args.json:
        args.json.write_text(json.dumps({"records": len(corpus.texts), "args": {
            k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2))


def report(results: dict[str, dict]) -> None:
    print(f"{'':22}{'lang':>5}{'precision':>11}{'recall':>9}{'F1':>8}{'records/s':>12}{'peak MiB':>10}")
    for name, result in results.items():
        if "scores" not in result:
            continue
        for lang, s in result["scores"].items():
            print(f"{name:22}{lang:>5}{s['precision']:>11.4f}{s['recall']:>9.4f}{s['f1']:>8.4f}"
                  f"{result['records_per_second']:>12,.0f}{result['peak_memory_mb']:>10,.0f}")
    if "datasketch baseline" in results:
        ratio = results["thresher"]["records_per_second"] / results["datasketch baseline"]["records_per_second"]
        print(f"thresher / baseline records per second: {ratio:.1f}x")
    sig = results["signatures only (2,000 records)"]
    print(f"signatures only, 2,000 records: numpy {sig['thresher numpy seconds']}s, "
          f"MinHash.bulk {sig['datasketch MinHash.bulk seconds']}s ({sig['ratio']}x)")


if __name__ == "__main__":
    main()
