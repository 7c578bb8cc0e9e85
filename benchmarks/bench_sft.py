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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def run_variant(variant: str, model_dir: Path, data: Path, out: Path, max_len: int, batch_size: int) -> dict:
    """Train one epoch with ``variant``; return its throughput figures (runs inside a fresh process)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thresher.train.collate import naive_batches, pad_batch
    from thresher.train.config import TrainConfig
    from thresher.train.data import load_examples
    from thresher.train.loop import train
    from thresher.train.sft import SFTObjective, sft_batches

    import matplotlib.pyplot  # noqa: F401 - imported before timing: loss.png is drawn inside train()

    torch.manual_seed(0)
    torch.set_num_threads(1)  # CPU seconds then measure work, which a shared machine's load does not inflate
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    examples, report = load_examples([data], tok, max_len, out)
    trained = report.trained_tokens
    if variant == "naive":
        groups = naive_batches(len(examples), batch_size, seed=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()
        start, cpu = time.perf_counter(), time.process_time()
        for group in groups:
            batch = pad_batch([examples[i] for i in group], tok.pad_token_id, pad_to=max_len)
            loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["labels"]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return {"variant": variant, "tokens_per_s": trained / seconds, "tokens_per_cpu_s": trained / cpu,
                "padded_tokens": len(examples) * max_len, "peak_rss_mb": peak_rss_mb()}
    packing = variant == "thresher-packing"
    config = TrainConfig(model=str(model_dir), data=[str(data)], output=str(out / variant), method="full",
                         epochs=1, batch_size=batch_size, grad_accum=1, lr=1e-4, max_len=max_len,
                         packing=packing, save_steps=10**9, warmup_ratio=0.0)
    source = sft_batches(examples, batch_size, tok.pad_token_id, packing, max_len)
    padded = sum(b["input_ids"].numel() for b in source(config.seed))
    cpu = time.process_time()
    state = train(config, model, SFTObjective(), lambda epoch: source(config.seed + epoch))
    cpu = time.process_time() - cpu  # includes the final save and plot: slightly against thresher
    assert state.units_seen == trained
    return {"variant": variant, "tokens_per_s": state.log[-1]["tokens_per_s"], "tokens_per_cpu_s": trained / cpu,
            "padded_tokens": padded, "peak_rss_mb": peak_rss_mb()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=96, help="dialogues to train on (default 96)")
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="runs per variant, best kept (default 2)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one variant per process
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:
        work = Path(args.workdir)
        result = run_variant(args.variant, work / "model", work / "data.jsonl", work, args.max_len, args.batch_size)
        print(json.dumps(result))
        return 0

    from rich.console import Console
    from rich.table import Table

    from thresher.train.tiny import build_tiny_model

    console = Console(width=120)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_data(work / "data.jsonl", args.records)
        build_tiny_model(work / "model", [work / "data.jsonl"], vocab_size=1000, layers=args.layers,
                         hidden=args.hidden)
        results: dict[str, dict] = {}
        for _ in range(args.rounds):  # interleaved rounds, best kept: the machine is shared and noisy
            for variant in VARIANTS:
                command = [sys.executable, __file__, "--variant", variant, "--workdir", tmp,
                           "--max-len", str(args.max_len), "--batch-size", str(args.batch_size)]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                if result["tokens_per_cpu_s"] > results.get(variant, {}).get("tokens_per_cpu_s", 0):
                    results[variant] = result
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
