"""What the training benchmarks (``bench_sft.py``, ``bench_rm.py``) share.

Their flags; one process per variant (so peak memory and warm caches do not
mix between variants), rounds interleaved and each variant's best kept (the
machine is shared and noisy); torch pinned to one thread, so CPU seconds
measure work that other users' load does not inflate; and the naive loop
every variant is compared with.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Bench:
    """One training benchmark.

    ``make_data(path, records)`` writes the data file ``data`` into the work
    folder; ``run_variant(variant, work, max_len, batch_size)`` trains one
    epoch in a fresh process and returns its figures, of which ``metric``
    (higher is better) picks each variant's best round; ``report(args,
    results)`` prints them.
    """

    doc: str
    script: str
    records: str
    variants: tuple[str, ...]
    data: str
    make_data: Callable[[Path, int], None]
    run_variant: Callable[[str, Path, int, int], dict[str, Any]]
    metric: str
    report: Callable[[argparse.Namespace, dict[str, dict[str, Any]]], None]

    def parse_args(self, argv: list[str] | None = None) -> argparse.Namespace:
        parser = argparse.ArgumentParser(description=self.doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--records", type=int, default=96, help=f"{self.records} to train on (default 96)")
        parser.add_argument("--max-len", type=int, default=512)
        parser.add_argument("--batch-size", type=int, default=8)
        parser.add_argument("--hidden", type=int, default=128)
        parser.add_argument("--layers", type=int, default=2)
        parser.add_argument("--rounds", type=int, default=2, help="runs per variant, best kept (default 2)")
        parser.add_argument("--variant", choices=self.variants, help=argparse.SUPPRESS)  # internal: one per process
        parser.add_argument("--workdir", help=argparse.SUPPRESS)
        return parser.parse_args(argv)

    def main(self, argv: list[str] | None = None) -> int:
        """Parent: build data and a tiny model, run the rounds, report. Child (``--variant``): run one variant."""
        args = self.parse_args(argv)
        if args.variant:
            print(json.dumps(self._child(args)))
            return 0
        from thresher.train.tiny import build_tiny_model

        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            self.make_data(work / self.data, args.records)
            build_tiny_model(work / "model", [work / self.data], vocab_size=1000, layers=args.layers,
                             hidden=args.hidden)
            results: dict[str, dict[str, Any]] = {}
            for _ in range(args.rounds):
                for variant in self.variants:
                    command = [sys.executable, self.script, "--variant", variant, "--workdir", tmp,
                               "--max-len", str(args.max_len), "--batch-size", str(args.batch_size)]
                    done = subprocess.run(command, capture_output=True, text=True, check=True)
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    if result[self.metric] > results.get(variant, {}).get(self.metric, 0):
                        results[variant] = result
        self.report(args, results)
        return 0

    def _child(self, args: argparse.Namespace) -> dict[str, Any]:
        import torch

        import matplotlib.pyplot  # noqa: F401 - imported before timing: loss.png is drawn inside train()

        torch.manual_seed(0)
        torch.set_num_threads(1)
        return self.run_variant(args.variant, Path(args.workdir), args.max_len, args.batch_size)


def naive_epoch(model: Any, batches: Iterable[Any], loss: Callable[[Any], Any]) -> tuple[float, float]:
    """What a first hand-written loop does: AdamW, clip at 1.0, one step per batch. (wall s, CPU s)."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    start, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        loss(batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start, time.process_time() - cpu


def timed_train(config: Any, model: Any, objective: Any, source: Callable[[int], Any]) -> tuple[Any, float]:
    """thresher's loop on the same model: (its state, CPU seconds, the final save and plot included)."""
    from thresher.train.loop import train

    cpu = time.process_time()
    state = train(config, model, objective, source)
    return state, time.process_time() - cpu
