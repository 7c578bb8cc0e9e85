"""``thresher quality train``: a fastText good-vs-bad classifier, and its scorer.

The DCLM / NeMo-Curator recipe: a supervised fastText model on word bigrams,
trained on examples of the data you want (``--good``) and the data you do not
(``--bad``), checked on a held-out 10% split (precision, recall and F1 of the
``good`` class are printed and written beside the model). Chinese has no
spaces, so text is segmented into characters before fastText sees it (its
tokenizer splits on whitespace); Latin text is lower-cased.

fastText can diverge to NaN on small or lopsided inputs; both are checked
before training (too few records, a majority class more than ``--max-ratio``
times the minority: use ``--balance``) and a NaN during or after training is a
clear error suggesting a lower ``--lr``.

``thresher filter --quality-model MODEL.bin --min-quality 0.5`` scores with
``QualityModel``: the probability of ``good``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import regex

from thresher.curate.errors import InputError, RecordError, ThresherError
from thresher.curate.io.claims import InputPath, OutputPath

GOOD, BAD = "__label__good", "__label__bad"
MIN_PER_CLASS = 20
_CJK_CHAR = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")


def prepare(text: str) -> str:
    """One fastText input line: CJK characters as separate tokens, lower case, one line."""
    return " ".join(_CJK_CHAR.sub(r" \g<0> ", text.lower()).split())


def read_texts(path: str) -> list[str]:
    """The text a quality model reads (prompt and response, or the document) of every record."""
    from thresher.curate.io.formats import to_record
    from thresher.curate.io.readers import read_rows
    from thresher.curate.text.fields import texts_of

    found = []
    for row in read_rows(path):
        if row.data is None:
            raise InputError(row.source, row.error or "unreadable record", row.line)
        try:
            record = to_record(row.data, context={"allow_placeholders": True})
        except RecordError as exc:
            raise InputError(row.source, f"{exc.field or '(record)'}: {exc.reason}", row.line) from None
        text = prepare(texts_of(record).body)
        if text:
            found.append(text)
    return found


@dataclass
class Metrics:
    """Held-out scores of the ``good`` class."""

    train_good: int
    train_bad: int
    heldout_good: int
    heldout_bad: int
    precision: float
    recall: float
    f1: float
    accuracy: float


def split(texts: list[str], holdout: float, rng: random.Random) -> tuple[list[str], list[str]]:
    """(train, held-out), shuffled; at least one held-out record."""
    shuffled = texts[:]
    rng.shuffle(shuffled)
    cut = max(1, round(len(shuffled) * holdout))
    return shuffled[cut:], shuffled[:cut]


def check_inputs(good: list[str], bad: list[str], max_ratio: float, balance: bool, rng: random.Random):
    """Refuse inputs fastText cannot learn from; downsample the larger class when asked."""
    for name, texts in (("--good", good), ("--bad", bad)):
        if len(texts) < MIN_PER_CLASS:
            raise ThresherError(
                f"{name} has {len(texts)} usable records; a quality classifier needs at least "
                f"{MIN_PER_CLASS} per class (fastText returns NaN or guesses on fewer)"
            )
    big, small = (good, bad) if len(good) >= len(bad) else (bad, good)
    if balance:
        return (rng.sample(good, len(small)), rng.sample(bad, len(small)))
    if len(big) > max_ratio * len(small):
        raise ThresherError(
            f"classes are unbalanced ({len(good)} good vs {len(bad)} bad, more than {max_ratio:g}:1); "
            "fastText then predicts the majority for everything. Pass --balance to downsample the larger class"
        )
    return good, bad


def train(
    good: list[str],
    bad: list[str],
    output: str | Path,
    *,
    lr: float = 0.1,
    epoch: int = 25,
    word_ngrams: int = 2,
    dim: int = 64,
    min_count: int = 1,
    holdout: float = 0.1,
    seed: int = 0,
    max_ratio: float = 10.0,
    balance: bool = False,
    threads: int = 2,
) -> Metrics:
    """Train, save to ``output`` atomically, and return held-out metrics."""
    import fasttext

    rng = random.Random(seed)
    good, bad = check_inputs(good, bad, max_ratio, balance, rng)
    good_train, good_test = split(good, holdout, rng)
    bad_train, bad_test = split(bad, holdout, rng)
    lines = [f"{GOOD} {t}" for t in good_train] + [f"{BAD} {t}" for t in bad_train]
    rng.shuffle(lines)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        data = Path(tmp) / "train.txt"
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            model = fasttext.train_supervised(
                input=str(data), lr=lr, epoch=epoch, wordNgrams=word_ngrams, dim=dim,
                minCount=min_count, loss="softmax", seed=seed, thread=threads, verbose=0,
            )
        except RuntimeError as exc:
            raise ThresherError(f"fastText training failed ({exc}); lower --lr (now {lr:g}) or add records") from None
        metrics = evaluate(model, good_test, bad_test, len(good_train), len(bad_train))
        if math.isnan(metrics.precision + metrics.recall):
            raise ThresherError(f"fastText produced NaN scores; lower --lr (now {lr:g}) or add records")
        staged = Path(tmp) / output.name
        model.save_model(str(staged))
        os.replace(staged, output)
    return metrics


def evaluate(model, good: list[str], bad: list[str], train_good: int, train_bad: int) -> Metrics:
    """Precision, recall and F1 of ``good`` on held-out texts."""
    scores = good_probability(model, good + bad)
    predicted = [s >= 0.5 for s in scores]
    truth = [True] * len(good) + [False] * len(bad)
    tp = sum(p and t for p, t in zip(predicted, truth))
    fp = sum(p and not t for p, t in zip(predicted, truth))
    fn = sum(t and not p for p, t in zip(predicted, truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    if any(math.isnan(s) for s in scores):
        precision = recall = f1 = float("nan")
    accuracy = sum(p == t for p, t in zip(predicted, truth)) / len(truth)
    return Metrics(train_good, train_bad, len(good), len(bad), round(precision, 4), round(recall, 4),
                   round(f1, 4), round(accuracy, 4))


def good_probability(model, lines: list[str]) -> list[float]:
    """P(good) for each prepared line."""
    if not lines:
        return []
    labels, probs = model.predict(lines, k=2)
    return [float(dict(zip(label, prob)).get(GOOD, 0.0)) for label, prob in zip(labels, probs)]


class QualityModel:
    """A trained quality classifier; ``score`` gives P(good) for raw texts."""

    def __init__(self, path: str | Path) -> None:
        from thresher.curate.filter.langid import load_fasttext

        self.model = load_fasttext(path, "--quality-model")
        labels = set(self.model.get_labels())
        if labels != {GOOD, BAD}:
            raise ThresherError(
                f"--quality-model {path}: labels are {sorted(labels)}, not {GOOD}/{BAD}; "
                "train one with `thresher quality train`"
            )

    def score(self, texts: list[str]) -> list[float]:
        return [round(s, 4) for s in good_probability(self.model, [prepare(t) for t in texts])]


def configure(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train_parser = commands.add_parser("train", help="train a fastText good-vs-bad classifier",
                                       description="Train a fastText good-vs-bad quality classifier.")
    train_parser.add_argument("--good", nargs="+", required=True, type=InputPath, metavar="FILE", help="records of the kind to keep")
    train_parser.add_argument("--bad", nargs="+", required=True, type=InputPath, metavar="FILE", help="records of the kind to drop")
    train_parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="MODEL.bin", help="where to save the model")
    train_parser.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    train_parser.add_argument("--epoch", type=int, default=25, help="passes over the data (default 25)")
    train_parser.add_argument("--word-ngrams", type=int, default=2, help="word n-grams (default 2: bigrams)")
    train_parser.add_argument("--dim", type=int, default=64, help="vector size (default 64)")
    train_parser.add_argument("--holdout", type=float, default=0.1, help="held-out share for P/R/F1 (default 0.1)")
    train_parser.add_argument("--seed", type=int, default=0, help="split and training seed")
    train_parser.add_argument("--balance", action="store_true", help="downsample the larger class to the smaller")
    train_parser.add_argument("--max-ratio", type=float, default=10.0,
                              help="refuse classes more unbalanced than this without --balance (default 10)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from thresher.curate.io.writers import write_json

    good = [t for path in args.good for t in read_texts(path)]
    bad = [t for path in args.bad for t in read_texts(path)]
    metrics = train(
        good, bad, args.output, lr=args.lr, epoch=args.epoch, word_ngrams=args.word_ngrams, dim=args.dim,
        holdout=args.holdout, seed=args.seed, max_ratio=args.max_ratio, balance=args.balance,
    )
    metrics_path = Path(args.output).with_suffix(".metrics.json")
    write_json(metrics_path, asdict(metrics))
    table = Table(title=f"thresher quality train -> {args.output}")
    for column in ("train good", "train bad", "held-out", "precision", "recall", "F1", "accuracy"):
        table.add_column(column, justify="right")
    table.add_row(
        str(metrics.train_good), str(metrics.train_bad), str(metrics.heldout_good + metrics.heldout_bad),
        f"{metrics.precision:.3f}", f"{metrics.recall:.3f}", f"{metrics.f1:.3f}", f"{metrics.accuracy:.3f}",
    )
    Console().print(table)
    return 0
