"""What a run shows and keeps of its progress: ``metrics.jsonl``, ``loss.png`` and the progress bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """``metrics.jsonl`` (one JSON object per line) and ``loss.png`` from the same records."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.path = out / METRICS_FILE
        self.enabled = enabled

    def restart_after(self, step: int) -> list[dict[str, Any]]:
        """Drop lines past ``step`` (an interrupted run logged beyond its last checkpoint); return the rest."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [json.loads(line) for line in lines if line.strip()]
        kept = [record for record in kept if record.get("step", 0) <= step]
        if self.enabled:
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        return kept

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def plot(self) -> Path | None:
        """``loss.png``: train loss per step and eval loss; skipped without matplotlib."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        if not (self.enabled and self.path.exists()):
            return None
        records = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        train = [(r["step"], r["loss"]) for r in records if "loss" in r]
        evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
        figure, axes = plt.subplots(figsize=(7, 4))
        if train:
            axes.plot(*zip(*train), label="train loss", linewidth=1)
        if evals:
            axes.plot(*zip(*evals), "o-", label="eval loss")
        axes.set_xlabel("step")
        axes.set_ylabel("loss")
        axes.legend()
        axes.grid(alpha=0.3)
        figure.tight_layout()
        target = self.path.with_name("loss.png")
        figure.savefig(target, dpi=100)
        plt.close(figure)
        return target


def progress_bar(enabled: bool) -> Any:
    """A rich progress bar with loss, lr, throughput and ETA (a no-op off the main process)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), disable=not enabled,
    )


class ProgressLine:
    """``label: done/total, rate/s, ~ETA`` on stderr, every ``every`` seconds and at the end.

    Unlike a rich bar, it also shows in a log or CI output (stderr piped to a
    file), where an eval of a few hundred generations would otherwise sit
    silent for minutes. On a terminal the line is rewritten in place.
    """

    def __init__(self, label: str, total: int, unit: str = "answers", every: float = 5.0, stream: Any = None) -> None:
        import sys
        import time

        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = self.stream.isatty()
        self.every = 0.5 if self.terminal else every
        self.done = 0
        self._clock = time.monotonic
        self._start = self._last = self._clock()

    def __call__(self, count: int = 1) -> None:
        """``count`` more items are done."""
        self.done += count
        now = self._clock()
        if now - self._last >= self.every or self.done >= self.total:
            self._last = now
            self.stream.write(("\r" if self.terminal else "") + self.line(now - self._start)
                              + ("\n" if not self.terminal or self.done >= self.total else ""))
            self.stream.flush()

    def line(self, elapsed: float) -> str:
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        eta = f", ~{left:.0f} s left" if self.done < self.total else f" in {elapsed:.0f} s"
        return f"{self.label}: {self.done}/{self.total} {self.unit}, {rate:.2f}/s{eta}"
