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
        """``loss.png``: train loss per step and eval loss, and for RL runs a second panel with the
        mean reward and the KL to the reference; skipped without matplotlib."""
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
        rewards = [(r["step"], r["reward"]) for r in records if "reward" in r]
        kls = [(r["step"], r["kl"]) for r in records if "kl" in r]
        if rewards:
            figure, (axes, rl_axes) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
            rl_axes.plot(*zip(*rewards), color="tab:green", label="mean reward", linewidth=1)
            rl_axes.set_ylabel("reward")
            rl_axes.set_xlabel("step")
            rl_axes.grid(alpha=0.3)
            if kls:
                kl_axes = rl_axes.twinx()
                kl_axes.plot(*zip(*kls), color="tab:red", label="KL to reference", linewidth=1)
                kl_axes.set_ylabel("KL per token")
                kl_axes.legend(loc="lower right")
            rl_axes.legend(loc="upper left")
        else:
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
