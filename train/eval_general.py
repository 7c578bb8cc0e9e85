"""``thresher eval general``: how much general ability survived fine-tuning.

Two numbers on a held-out general set (``prompts/general/heldout.jsonl``:
factual, how-to, reasoning, writing and code prompts in English and Chinese,
none of them in thresher's demo training data), for the base model and for
the tuned one:

* **reference NLL**: mean per-token negative log-likelihood of the set's
  reference answers (assistant tokens only, under the model's chat template).
  Lower is better; the relative change after - before is the headline: a model
  that forgot how to answer ordinary questions finds good answers less likely.
* **drift**: mean per-token NLL, under the model, of the *base* model's own
  greedy answers to the same prompts. Before tuning this is the base scoring
  itself (its floor); the rise after tuning measures how far the model moved
  from what it used to say, whatever the quality of the references.

Means are per token over the whole set (sum of NLL / number of tokens), and
also per language. Base answers are cached on disk by the base's content
fingerprint, the prompt and ``--max-new-tokens`` (``--cache``), so a rerun, or
the next adapter evaluated against the same base, does not regenerate them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any

from thresher.curate.errors import ThresherError


def default_cache() -> Path:
    """Where base answers are kept: ``$XDG_CACHE_HOME/thresher/eval`` (``~/.cache/thresher/eval``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "thresher" / "eval"


def load_items(path: str | None = None) -> list[dict[str, str]]:
    """``{"lang", "category", "prompt", "reference"}`` rows: the shipped held-out set, or the user's file.

    A user file is any record file thresher reads whose rows have a prompt
    (``prompt``/``instruction``/``question``) and a reference answer
    (``reference``/``output``/``answer``/``response``).
    """
    from thresher.curate.io.readers import read_rows
    from thresher.curate.text.scripts import zh_or_en
    from thresher.prompts.banks import general_heldout

    if path is None:
        return general_heldout()
    items = []
    for row in read_rows(path):
        data = row.data or {}
        prompt = next((data[k] for k in ("prompt", "instruction", "question") if isinstance(data.get(k), str)), None)
        reference = next((data[k] for k in ("reference", "output", "answer", "response") if isinstance(data.get(k), str)), None)
        if not prompt or not reference:
            field = "prompt" if not prompt else "reference"
            raise ThresherError(f"{row.source}:{row.line}: {field}: missing (a general item needs a prompt and a reference)")
        items.append({"lang": data.get("lang") or zh_or_en(prompt), "category": data.get("category", "general"),
                      "prompt": prompt, "reference": reference})
    if not items:
        raise ThresherError(f"{path}: no items")
    return items


def mean_nll(items: list[dict[str, str]], scores: list[tuple[float, int]]) -> dict[str, Any]:
    """Per-token mean over all items and per language: {"nll", "tokens", "by_lang": {lang: nll}}."""
    def mean(pairs: list[tuple[float, int]]) -> float | None:
        tokens = sum(count for _, count in pairs)
        return round(sum(total for total, _ in pairs) / tokens, 4) if tokens else None

    langs = sorted({item["lang"] for item in items})
    by_lang = {lang: mean([s for item, s in zip(items, scores) if item["lang"] == lang]) for lang in langs}
    return {"nll": mean(scores), "tokens": sum(count for _, count in scores), "by_lang": by_lang}


def base_answers(base: Any, items: list[dict[str, str]], max_new_tokens: int, cache_dir: Path) -> list[str]:
    """The base model's greedy answers, from the cache where it has them, generated (and cached) otherwise."""
    from thresher.curate.synth.client import ReplyCache
    from thresher.train.metrics import counting

    fingerprint = base.fingerprint()
    cache = ReplyCache(cache_dir / f"{fingerprint}.jsonl")

    def key(prompt: str) -> str:
        return hashlib.blake2b(f"{max_new_tokens}\0{prompt}".encode(), digest_size=12).hexdigest()

    try:
        missing = [item["prompt"] for item in items if cache.get(key(item["prompt"])) is None]
        if missing:
            with counting(f"base answers ({base.label})", len(missing)) as progress:
                for prompt, (answer, _) in zip(missing, base.answers(missing, max_new_tokens, progress)):
                    cache.add(key(prompt), answer, {})
        return [cache.get(key(item["prompt"])) or "" for item in items]
    finally:
        cache.close()


def score(model: Any, items: list[dict[str, str]], answers: list[str] | None) -> dict[str, Any]:
    """Reference NLL and, given the base's answers, drift NLL for one model."""
    from thresher.train.metrics import counting

    pairs = [(item["prompt"], item["reference"]) for item in items]
    if answers is not None:
        pairs += [(item["prompt"], answer) for item, answer in zip(items, answers)]
    with counting(f"scoring {model.label}", len(pairs)) as progress:
        scores = model.nll(pairs, progress)
    result = {"reference": mean_nll(items, scores[:len(items)])}
    if answers is not None:
        result["drift"] = mean_nll(items, scores[len(items):])
    return result


def general_figures(model: Any, base: Any = None, items: list[dict[str, str]] | None = None, max_new_tokens: int = 128,
                    cache_dir: str | Path | None = None) -> dict[str, Any]:
    """How much general ability ``model`` kept relative to ``base``, as one dict.

    ``model`` and ``base`` are ``LocalModel`` or ``ApiModel`` objects (``base``
    may be None: then only the reference NLL of ``model``). The dict:
    ``{"items", "model", "base", "reference_nll": {"base", "model", "relative_change", "by_lang"},
    "drift": {"base", "model", "by_lang"}}`` (``drift`` and the base figures only with a base).
    """
    items = items if items is not None else load_items()
    figures: dict[str, Any] = {"items": len(items), "model": model.label, "base": base.label if base else None}
    answers = None
    if base is not None:
        answers = base_answers(base, items, max_new_tokens, Path(cache_dir) if cache_dir else default_cache())
        before = score(base, items, answers)
        base.release()
    after = score(model, items, answers)
    model.release()
    reference = {"model": after["reference"]["nll"], "tokens": after["reference"]["tokens"],
                 "by_lang": {lang: {"model": value} for lang, value in after["reference"]["by_lang"].items()}}
    if base is not None:
        reference["base"] = before["reference"]["nll"]
        reference["relative_change"] = relative(before["reference"]["nll"], after["reference"]["nll"])
        for lang, value in before["reference"]["by_lang"].items():
            reference["by_lang"].setdefault(lang, {})["base"] = value
        figures["drift"] = {"base": before["drift"]["nll"], "model": after["drift"]["nll"],
                            "by_lang": {lang: {"base": before["drift"]["by_lang"][lang], "model": value}
                                        for lang, value in after["drift"]["by_lang"].items()}}
    figures["reference_nll"] = reference
    return figures


def relative(before: float | None, after: float | None) -> float | None:
    """(after - before) / before, rounded; None when either is missing."""
    if before is None or after is None or before == 0:
        return None
    return round((after - before) / before, 4)


def configure(parser: argparse.ArgumentParser) -> None:
    from thresher.train.remote import api_flags

    parser.add_argument("--model", required=True,
                        help="model folder or adapter folder (with --base-url: the served model's name)")
    parser.add_argument("--adapter", metavar="DIR", help="a LoRA adapter folder to apply to --model")
    parser.add_argument("--compare", metavar="BASE",
                        help="the base to compare with (default: the adapter's base; with --base-url: a served name)")
    parser.add_argument("--items", metavar="FILE", help="prompts with reference answers (default: the shipped held-out set)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="longest base answer for drift (default 128)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per generate call (default 16)")
    parser.add_argument("--cache", metavar="DIR", help=f"base answers cache (default {default_cache()})")
    parser.add_argument("--report", metavar="OUT.json", help="write the figures as JSON")
    parser.add_argument("--tokenizer", metavar="FOLDER", help="with --base-url: local tokenizer with the chat template")
    api_flags(parser)


def models_from(args: argparse.Namespace) -> tuple[Any, Any]:
    """(model, base or None) as the flags describe them, local or served."""
    from thresher.train.inference import adapter_base, is_adapter
    from thresher.train.remote import ApiModel, api_config
    from thresher.train.scoring import LocalModel

    if args.base_url:
        if args.adapter:
            raise ThresherError("--adapter is for a local model; a served model has its adapters applied by its server")
        model = ApiModel(api_config(args, args.model), args.tokenizer)
        base = ApiModel(api_config(args, args.compare), args.tokenizer) if args.compare else None
        return model, base
    batch = getattr(args, "batch_size", 16)
    model = LocalModel(args.model, args.adapter, batch_size=batch)
    compare = args.compare
    if compare is None and (args.adapter or is_adapter(args.model)):
        compare = adapter_base(args.adapter or args.model)
    return model, LocalModel(compare, batch_size=batch) if compare else None


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from thresher.curate.io.writers import write_json

    model, base = models_from(args)
    figures = general_figures(model, base, load_items(args.items), args.max_new_tokens, args.cache)
    if args.report:
        write_json(args.report, figures)
    print_figures(Console(), figures)
    return 0


def print_figures(console: Any, figures: dict[str, Any]) -> None:
    """Reference NLL and drift, base beside model, per language."""
    from rich.table import Table

    with_base = figures["base"] is not None
    table = Table(title=f"thresher eval general ({figures['items']} held-out prompts; NLL per token, lower is better)")
    table.add_column("metric")
    if with_base:
        table.add_column("base", justify="right")
    table.add_column("model", justify="right")
    if with_base:
        table.add_column("change", justify="right")

    def row(name: str, pair: dict[str, Any]) -> None:
        cells = [_num(pair.get("model"))]
        if with_base:
            cells = [_num(pair.get("base")), *cells, _change(relative(pair.get("base"), pair.get("model")))]
        table.add_row(name, *cells)

    row("reference NLL", figures["reference_nll"])
    for lang, pair in figures["reference_nll"]["by_lang"].items():
        row(f"  {lang}", pair)
    if "drift" in figures:
        row("drift (NLL of the base's answers)", figures["drift"])
        for lang, pair in figures["drift"]["by_lang"].items():
            row(f"  {lang}", pair)
    console.print(table)
    console.print(f"model: {figures['model']}" + (f"   base: {figures['base']}" if with_base else ""))


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _change(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"
