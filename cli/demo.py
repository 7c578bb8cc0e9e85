"""``thresher demo``: the whole self-cognition job on a fresh machine, in minutes.

No API key, no GPU, no download: it builds a tiny model locally, then runs
the shipped ``examples/self_cognition.yaml`` recipe on embedded defaults
(offline identity synthesis, the shipped general sample), trains it, and
probes identity before and after. Everything lands in ``./thresher-demo/``.
The same recipe runs a real job: ``--model`` and ``--base-url`` say how.
"""

from __future__ import annotations

import argparse
from importlib.resources import as_file, files
from pathlib import Path

from thresher.curate.io.claims import InputPath, OutputPath

#: Training settings that let a random tiny model memorise its data in a few minutes on 2 CPU cores.
TINY_TRAINING = {"method": "full", "max_steps": 300, "lr": 3e-3, "batch_size": 16, "grad_accum": 1, "max_len": 256}
TINY_MODEL = {"layers": 2, "hidden": 128, "vocab_size": 3000}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="thresher-demo", type=OutputPath, metavar="DIR", help="where everything is written (default ./thresher-demo)")
    parser.add_argument("--model", type=InputPath, metavar="PATH", help="a real base model folder instead of the tiny one (LoRA, recipe defaults)")
    parser.add_argument("--base-url", metavar="URL", help="synthesize identity data through this OpenAI-compatible API")
    parser.add_argument("--api-model", metavar="NAME", help="the API's model name (with --base-url; key from OPENAI_API_KEY)")
    parser.add_argument("--steps", type=int, default=TINY_TRAINING["max_steps"], help="training steps for the tiny model")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from thresher.prompts.banks import identity_questions
    from thresher.curate.errors import ThresherError
    from thresher.cli.recipe import Runner, load_recipe, print_summary

    console = Console()
    out = Path(args.out).resolve()
    if args.base_url and not args.api_model:
        raise ThresherError("--base-url needs --api-model (the model name the API serves)")
    with as_file(files("thresher.examples")) as examples:
        recipe_path = Path(examples) / "self_cognition.yaml"
        overrides: dict[str, object] = {}
        if args.model:
            from thresher.train.model_path import resolve_model

            overrides["model"] = resolve_model(args.model)
        else:
            from thresher.train.tiny import build_tiny_model

            base = out / "base-model"
            if not (base / "config.json").exists():
                console.print(f"[bold]building a tiny random model[/bold] in {base} (no download)")
                bank = [row["question"] for lang in ("zh", "en") for row in identity_questions(lang)]
                build_tiny_model(base, data=[Path(examples) / "general_sample.jsonl"], texts=bank,
                                 vocab_size=TINY_MODEL["vocab_size"], layers=TINY_MODEL["layers"], hidden=TINY_MODEL["hidden"])
            overrides.update({"model": str(base), **TINY_TRAINING, "max_steps": args.steps})
        if args.base_url:
            overrides.update({"offline": False, "base_url": args.base_url, "api_model": args.api_model})
        recipe = load_recipe(recipe_path, overrides)
        results = Runner(recipe, recipe_path, out).run()
    print_summary(results, out)
    _closing(console, out, tiny=not args.model)
    return 0


def _closing(console: object, out: Path, tiny: bool) -> None:
    from thresher.cli.recipe_check import shipped_recipes

    report = out / "eval" / "report.json"
    lines = [
        "",
        f"[bold]Everything is under[/bold] {out}:",
        f"  identity data  {out / 'identity'}/ (raw), {out / 'identity_clean'}/ (deduplicated, filtered)",
        f"  training data  {out / 'splits' / 'data'}/ (train / val)",
        f"  model          {out / 'train' / 'model'}/ (loss.png, metrics.jsonl, config)",
        f"  eval report    {report} (every answer, before and after)",
        f"  manifest       {out / 'manifest.json'} (each stage's command line, inputs, counts; rerun to resume)",
    ]
    if tiny:
        lines += [
            "",
            "[yellow]Be honest about what this shows:[/yellow] the tiny random model [bold]memorises[/bold] its "
            "training answers; it does not understand them. The pass rate rises because it learned to say the name, "
            "and the parrot rate shows it also says it where nobody asked. A real model keeps its general ability.",
        ]
    lines += [
        "",
        "[bold]The same recipe with a real model and API:[/bold]",
        "  thresher demo --model /path/to/Qwen2.5-0.5B-Instruct --base-url http://localhost:8000/v1 --api-model Qwen2.5-7B-Instruct",
        "  thresher run self_cognition --set model=/path/to/model   (the shipped recipe, by name)",
        f"  recipe file: {shipped_recipes()['self_cognition']}   (copy it to change stages; thresher run --list)",
    ]
    for line in lines:
        console.print(line)  # type: ignore[attr-defined]
