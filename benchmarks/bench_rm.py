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
import sys
from pathlib import Path

from harness import Bench, naive_epoch, timed_train

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
    import torch.nn.functional as F

    from thresher.train.collate import naive_batches
    from thresher.train.pairs import PairEncoder, grouped_batches, load_pairs, pad_rows, pair_batch
    from thresher.train.rm import PairwiseObjective, RMConfig, load_reward_model, load_rm_tokenizer

    config = RMConfig(model=str(work / "model"), data=[str(work / "data.json")], output=str(work / variant),
                      method="full", epochs=1, batch_size=batch_size, grad_accum=1, lr=1e-4, max_len=max_len,
                      save_steps=10**9, warmup_ratio=0.0)
    tokenizer, layout, added = load_rm_tokenizer(config.model)
    encoder = PairEncoder(tokenizer, max_len, layout)
    pairs, _ = load_pairs(config.data, encoder, work / variant)
    model = load_reward_model(config, tokenizer, added)
    pad = tokenizer.pad_token_id
    if variant == "naive":
        def loss(items: list) -> object:
            chosen = pad_rows([encoder.join(p.prompt, p.chosen) for p in items], pad, pad_to=max_len)
            rejected = pad_rows([encoder.join(p.prompt, p.rejected) for p in items], pad, pad_to=max_len)
            # tiny models' pad is not EOS, so the model's own pooling reads the right token here
            return -F.logsigmoid(model(**chosen).logits[:, 0] - model(**rejected).logits[:, 0]).mean()

        groups = naive_batches(len(pairs), batch_size, seed=0)
        seconds, cpu = naive_epoch(model, ([pairs[i] for i in group] for group in groups), loss)
        return {"variant": variant, "pairs_per_s": len(pairs) / seconds, "pairs_per_cpu_s": len(pairs) / cpu,
                "tokens_computed": 2 * len(pairs) * max_len}

    def collate(items: list) -> dict:
        return pair_batch(items, encoder, pad)

    source = lambda epoch: grouped_batches(pairs, batch_size, config.seed + epoch, collate)  # noqa: E731
    computed = sum(b["input_ids"].numel() for b in source(0))
    state, cpu = timed_train(config, model, PairwiseObjective(), source)
    assert state.units_seen == len(pairs)
    return {"variant": variant, "pairs_per_s": state.log[-1]["pairs_per_s"], "pairs_per_cpu_s": len(pairs) / cpu,
            "tokens_computed": computed}


def report(args: argparse.Namespace, results: dict[str, dict]) -> None:
    """One table: thresher against the naive loop."""
    from rich.console import Console
    from rich.table import Table

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


BENCH = Bench(__doc__, __file__, "preference pairs", VARIANTS, "data.json", make_data, run_variant, "pairs_per_cpu_s",
              report)

if __name__ == "__main__":
    sys.exit(BENCH.main())
