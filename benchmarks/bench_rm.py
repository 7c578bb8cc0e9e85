"""Reward-model training throughput on CPU: thresher against a naive loop, same run.

Both train the same tiny Llama reward model (full fine-tuning, fp32,
pairwise loss) for one epoch on the same tokenized preference pairs of
mixed length, batch size 8 pairs, no accumulation:

* naive: shuffled batches; chosen and rejected go through two separate
  forward passes, each padded to --max-len (what a first hand-written loop
  does);
* thresher: ``loop.train`` with ``PairwiseObjective``: length-grouped
  batches, chosen and rejected rows in one forward pass, padded to the
  batch's longest row only.

Reported: pairs per CPU-second (one torch thread, so the figure measures
work rather than the load other users put on a shared machine; the ratio
uses it) and per wall-clock second. Each variant runs in its own process.

    .venv/bin/python benchmarks/bench_rm.py              # quick: 96 pairs
    .venv/bin/python benchmarks/bench_rm.py --records 1000
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the quick brown fox jumps over a lazy dog while tiny reward models learn which of two answers "
         "people prefer about data training tokens batches and padding in one readable loop").split()
VARIANTS = ("naive", "thresher")


def make_data(path: Path, records: int, seed: int = 0) -> None:
    """Preference pairs whose replies range from a few words to a few hundred (long-tailed, like real data)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(records):
        prompt = " ".join(rng.choices(WORDS, k=rng.randint(3, 30))) + "?"
        chosen, rejected = (" ".join(rng.choices(WORDS, k=min(int(rng.expovariate(1 / 60)) + 3, 300)))
                            for _ in range(2))
        rows.append({"conversations": [{"from": "human", "value": prompt}],
                     "chosen": {"from": "gpt", "value": chosen + " good."},
                     "rejected": {"from": "gpt", "value": rejected + " bad."}})
    path.write_text(json.dumps(rows), encoding="utf-8")


def run_variant(variant: str, work: Path, max_len: int, batch_size: int) -> dict:
    """Train one epoch with ``variant``; return its throughput (runs inside a fresh process)."""
    import torch
    import torch.nn.functional as F

    from thresher.train.collate import naive_batches
    from thresher.train.loop import train
    from thresher.train.pairs import PairEncoder, grouped_batches, load_pairs, pad_rows, pair_batch
    from thresher.train.rm import PairwiseObjective, RMConfig, load_reward_model, load_rm_tokenizer

    import matplotlib.pyplot  # noqa: F401 - imported before timing: loss.png is drawn inside train()

    torch.manual_seed(0)
    torch.set_num_threads(1)  # CPU seconds then measure work, which a shared machine's load does not inflate
    config = RMConfig(model=str(work / "model"), data=[str(work / "data.json")], output=str(work / variant),
                      method="full", epochs=1, batch_size=batch_size, grad_accum=1, lr=1e-4, max_len=max_len,
                      save_steps=10**9, warmup_ratio=0.0)
    tokenizer, layout, added = load_rm_tokenizer(config.model)
    encoder = PairEncoder(tokenizer, max_len, layout)
    pairs, _ = load_pairs(config.data, encoder, work / variant)
    model = load_reward_model(config, tokenizer, added)
    pad = tokenizer.pad_token_id
    if variant == "naive":
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()
        start, cpu = time.perf_counter(), time.process_time()
        for group in naive_batches(len(pairs), batch_size, seed=0):
            items = [pairs[i] for i in group]
            chosen = pad_rows([encoder.join(p.prompt, p.chosen) for p in items], pad, pad_to=max_len)
            rejected = pad_rows([encoder.join(p.prompt, p.rejected) for p in items], pad, pad_to=max_len)
            # tiny models' pad is not EOS, so the model's own pooling reads the right token here
            loss = -F.logsigmoid(model(**chosen).logits[:, 0] - model(**rejected).logits[:, 0]).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return {"variant": variant, "pairs_per_s": len(pairs) / seconds, "pairs_per_cpu_s": len(pairs) / cpu,
                "tokens_computed": 2 * len(pairs) * max_len}

    def collate(items: list) -> dict:
        return pair_batch(items, encoder, pad)

    source = lambda epoch: grouped_batches(pairs, batch_size, config.seed + epoch, collate)  # noqa: E731
    computed = sum(b["input_ids"].numel() for b in source(0))
    cpu = time.process_time()
    state = train(config, model, PairwiseObjective(), source)
    cpu = time.process_time() - cpu  # includes the final save and plot: slightly against thresher
    assert state.units_seen == len(pairs)
    return {"variant": variant, "pairs_per_s": state.log[-1]["pairs_per_s"], "pairs_per_cpu_s": len(pairs) / cpu,
            "tokens_computed": computed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=96, help="preference pairs to train on (default 96)")
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="runs per variant, best kept (default 2)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one variant per process
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:
        print(json.dumps(run_variant(args.variant, Path(args.workdir), args.max_len, args.batch_size)))
        return 0

    from rich.console import Console
    from rich.table import Table

    from thresher.train.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_data(work / "data.json", args.records)
        build_tiny_model(work / "model", [work / "data.json"], vocab_size=1000, layers=args.layers, hidden=args.hidden)
        results: dict[str, dict] = {}
        for _ in range(args.rounds):  # interleaved rounds, best kept: the machine is shared and noisy
            for variant in VARIANTS:
                command = [sys.executable, __file__, "--variant", variant, "--workdir", tmp,
                           "--max-len", str(args.max_len), "--batch-size", str(args.batch_size)]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                if result["pairs_per_cpu_s"] > results.get(variant, {}).get("pairs_per_cpu_s", 0):
                    results[variant] = result
    base = results["naive"]["pairs_per_cpu_s"]
    table = Table(title=f"reward model on CPU: {args.records} pairs, tiny Llama (hidden {args.hidden}, "
                        f"{args.layers} layers), batch {args.batch_size} pairs, max-len {args.max_len}, "
                        f"best of {args.rounds}")
    for column in ("variant", "pairs/CPU-s", "vs naive", "pairs/s (wall)", "tokens computed"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for variant, r in results.items():
        table.add_row(variant, f"{r['pairs_per_cpu_s']:.2f}", f"{r['pairs_per_cpu_s'] / base:.2f}x",
                      f"{r['pairs_per_s']:.2f}", str(r["tokens_computed"]))
    Console(width=120).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
