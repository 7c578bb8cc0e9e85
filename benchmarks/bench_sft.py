"""SFT throughput on CPU: thresher (length-grouped, and packed) against a naive loop, same run.

All three train the same tiny Llama (full fine-tuning, fp32) for one epoch on
the same tokenized dialogues of mixed length, batch size 8, no accumulation:

* naive: shuffled batches, every batch padded to --max-len, the model's own
  mean loss per batch (what a first hand-written loop does);
* thresher: ``loop.train`` with length-grouped batches (minimal padding);
* thresher --packing: ``loop.train`` with records packed into --max-len rows.

Reported: trained (assistant) tokens per CPU-second of training (one torch
thread, so the figure measures work, not the load other users put on a shared
machine; the ratio "vs naive" uses it), the same per wall-clock second, and the
process's peak resident memory (each variant runs in its own process, so
peaks do not mix). There is no TRL SFTTrainer variant yet (trl is not in
thresher's environment); the script says so either way.

    .venv/bin/python benchmarks/bench_sft.py              # quick: 96 records
    .venv/bin/python benchmarks/bench_sft.py --records 1000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
from pathlib import Path

from harness import Bench, naive_epoch, timed_train

WORDS = ("the quick brown fox jumps over a lazy dog while tiny models learn to answer short questions "
         "about data training tokens batches packing and padding in one readable loop").split()
VARIANTS = ("naive", "thresher", "thresher-packing")


def make_data(path: Path, records: int, seed: int = 0) -> None:
    """Dialogues whose answers range from a few words to a few hundred (long-tailed, like real SFT data)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(records):
            words = min(int(rng.expovariate(1 / 60)) + 3, 300)
            question = " ".join(rng.choices(WORDS, k=rng.randint(3, 20))) + "?"
            answer = " ".join(rng.choices(WORDS, k=words)) + "."
            handle.write(json.dumps({"instruction": question, "input": "", "output": answer}) + "\n")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_variant(variant: str, work: Path, max_len: int, batch_size: int) -> dict:
    """Train one epoch with ``variant``; return its throughput figures (runs inside a fresh process)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thresher.train.collate import naive_batches, pad_batch
    from thresher.train.config import TrainConfig
    from thresher.train.data import load_examples
    from thresher.train.sft import SFTObjective, sft_batches

    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.float32)
    examples, report = load_examples([work / "data.jsonl"], tok, max_len, work)
    trained = report.trained_tokens
    if variant == "naive":
        batches = (pad_batch([examples[i] for i in group], tok.pad_token_id, pad_to=max_len)
                   for group in naive_batches(len(examples), batch_size, seed=0))
        seconds, cpu = naive_epoch(model, batches, lambda batch: model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss)
        return {"variant": variant, "tokens_per_s": trained / seconds, "tokens_per_cpu_s": trained / cpu,
                "padded_tokens": len(examples) * max_len, "peak_rss_mb": peak_rss_mb()}
    packing = variant == "thresher-packing"
    config = TrainConfig(model=str(work / "model"), data=[str(work / "data.jsonl")], output=str(work / variant),
                         method="full", epochs=1, batch_size=batch_size, grad_accum=1, lr=1e-4, max_len=max_len,
                         packing=packing, save_steps=10**9, warmup_ratio=0.0)
    source = sft_batches(examples, batch_size, tok.pad_token_id, packing, max_len)
    padded = sum(b["input_ids"].numel() for b in source(config.seed))
    state, cpu = timed_train(config, model, SFTObjective(), lambda epoch: source(config.seed + epoch))
    assert state.units_seen == trained
    return {"variant": variant, "tokens_per_s": state.log[-1]["tokens_per_s"], "tokens_per_cpu_s": trained / cpu,
            "padded_tokens": padded, "peak_rss_mb": peak_rss_mb()}


def report(args: argparse.Namespace, results: dict[str, dict]) -> None:
    """One table: every variant against the naive loop."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    base = results["naive"]["tokens_per_cpu_s"]
    table = Table(title=f"SFT on CPU: {args.records} records, tiny Llama (hidden {args.hidden}, "
                        f"{args.layers} layers), batch {args.batch_size}, max-len {args.max_len}, "
                        f"best of {args.rounds}")
    for column in ("variant", "trained tokens/CPU-s", "vs naive", "trained tokens/s (wall)", "tokens computed",
                   "peak RSS MB"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for variant, r in results.items():
        table.add_row(variant.replace("thresher-", "thresher --"), f"{r['tokens_per_cpu_s']:.0f}",
                      f"{r['tokens_per_cpu_s'] / base:.2f}x", f"{r['tokens_per_s']:.0f}", str(r["padded_tokens"]),
                      f"{r['peak_rss_mb']:.0f}")
    console.print(table)
    try:
        import trl  # noqa: F401
    except ImportError:
        console.print("TRL SFTTrainer: skipped (trl is not installed)")
    else:
        console.print("TRL SFTTrainer: skipped (trl is installed, but this script has no TRL variant yet)")


BENCH = Bench(__doc__, __file__, "dialogues", VARIANTS, "data.jsonl", make_data, run_variant, "tokens_per_cpu_s",
              report)

if __name__ == "__main__":
    sys.exit(BENCH.main())
