"""What a run shows and keeps of its progress: ``metrics.jsonl``, ``loss.png`` and the progress bar."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
        mean reward and the KL to the reference (matplotlib is a core dependency: the plot is a product)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

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


#: Log fields that describe the run's pace, not how well it learned: left out of the final table.
PACE = ("step", "epoch", "lr", "grad_norm")


def print_run_summary(console: Any, log: list[dict[str, Any]], out: Path, saved: str) -> None:
    """The end of a run: final train and eval metrics side by side, where the model and the plot are."""
    from rich.table import Table

    last = next((r for r in reversed(log) if "loss" in r), {})
    last_eval = next((r for r in reversed(log) if "eval_loss" in r), {})
    table = Table(title=f"final metrics (step {last.get('step', 0)})")
    table.add_column("metric")
    table.add_column("train", justify="right")
    if last_eval:
        table.add_column(f"eval (step {last_eval['step']})", justify="right")
    for name, value in last.items():
        if name in PACE or name.endswith("_per_s") or name.startswith("eval_"):
            continue
        table.add_row(name, f"{value:.4g}", *([f"{last_eval[f'eval_{name}']:.4g}" if f"eval_{name}" in last_eval
                                               else "-"] if last_eval else []))
    console.print(table)
    console.print(f"saved {saved} to {out}", soft_wrap=True)
    console.print(f"loss plot: {out / 'loss.png'}   every step: {out / METRICS_FILE}", soft_wrap=True)


def progress_bar(enabled: bool) -> Any:
    """A rich progress bar with loss, lr, throughput and ETA (a no-op off the main process); progress
    lines instead when the output is not a terminal (see ``LogProgress``)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console()
    if enabled and not console.is_terminal:
        return LogProgress(console)
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), disable=not enabled, console=console,
    )


class LogProgress:
    """Progress for a log file or a pipe: a plain line per task every ``every`` seconds and at the end.

    A rich bar redraws in place, which a pipe cannot show: piped, a long
    run would print nothing until it ends. This keeps the part of rich's
    ``Progress`` interface the commands use (``add_task``, ``update``, ``advance``).
    """

    def __init__(self, console: Any, every: float = 5.0) -> None:
        import time

        self.console, self.every, self.clock = console, every, time.monotonic
        self.tasks: list[dict[str, Any]] = []

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        for task in self.tasks:
            if task["printed"] != task["completed"]:
                self._print(task)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        now = self.clock()
        self.tasks.append({"description": description, "total": total, "completed": completed, "fields": fields,
                           "start": now, "start_completed": completed, "last": None, "printed": None})
        return len(self.tasks) - 1

    def update(self, task_id: int, completed: float | None = None, advance: float = 0, **fields: Any) -> None:
        task = self.tasks[task_id]
        task["completed"] = (task["completed"] if completed is None else completed) + advance
        task["fields"].update(fields)
        if task["last"] is None or self.clock() - task["last"] >= self.every:
            self._print(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _print(self, task: dict[str, Any]) -> None:
        now = self.clock()
        done, total = task["completed"], task["total"]
        line = f"{task['description']}: {done:g}/{total:g}" if total else f"{task['description']}: {done:g}"
        if task["fields"].get("stats"):
            line += f" {task['fields']['stats']}"
        rate = (done - task["start_completed"]) / max(now - task["start"], 1e-9)
        if total and rate > 0 and done < total:
            line += f" ({rate:.2f}/s, eta {(total - done) / rate:.0f}s)"
        elif rate > 0:
            line += f" ({rate:.2f}/s, {now - task['start']:.0f}s)"
        self.console.print(line, highlight=False, soft_wrap=True, markup=False)
        task["last"], task["printed"] = now, done


@contextmanager
def counting(description: str, total: int, console: Any = None) -> Iterator[Callable[[int], None]]:
    """An ``advance(n)`` callable over ``total`` items: a transient rich bar on a terminal, ``LogProgress``
    lines (done/total, rate, eta every few seconds) when the output is piped to a log or CI."""
    from rich.console import Console
    from rich.progress import Progress

    console = console or Console()
    with (Progress(console=console, transient=True) if console.is_terminal else LogProgress(console)) as progress:
        task = progress.add_task(description, total=total)
        yield lambda count=1: progress.advance(task, count)
