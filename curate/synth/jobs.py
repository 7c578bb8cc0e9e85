"""Running synthesis jobs: resumable, append-only, every failure kept with its reason.

A ``Job`` turns one input (a question, a record to paraphrase, a prompt to
score) into output records by making one or more requests through the
``LLMClient``. ``run_jobs`` runs them concurrently and:

* appends each finished job's records to the output at once, flushed, with
  provenance in ``meta`` (backend, endpoint, model, timestamp, and the job's
  key in ``meta.request``; the job adds its template, hash and temperature); a rerun reads those keys back and
  skips the jobs, so a killed run resumes without duplicates;
* appends each failed job to the rejects file with the reason, the error and
  the raw reply (already redacted by the client);
* counts everything (``in == skipped + written + failed``), shows a rich
  progress bar, prints a summary and writes it as the stats JSON;
* leaves every request in exactly one of the output and the rejects: a
  rejected request that ``--retry-rejects`` turned into records leaves the
  rejects file, and one that failed again keeps only its newest line.

Requests inside a job are cached by the client (``ReplyCache``), so a job
interrupted half-way does not pay again for the requests it finished.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thresher.curate.synth.client import LLMClient
from thresher.curate.synth.wire import GenerationFailure
from thresher.curate.stage import with_meta
from thresher.curate.io.writers import AppendJsonl, JsonlWriter, read_jsonl_objects, write_json


@dataclass
class Job:
    """One unit of work: ``run`` returns the records to write (dicts without the request key)."""

    key: str
    source: dict[str, Any]
    run: Callable[[LLMClient], Awaitable[list[dict[str, Any]]]]


@dataclass
class RunSummary:
    """The counts of one run; ``jobs == skipped + succeeded + failed``."""

    name: str
    jobs: int = 0
    skipped: int = 0
    succeeded: int = 0
    records: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, other: RunSummary) -> None:
        """Count ``other`` (a later round of the same stage) into this summary."""
        self.jobs += other.jobs
        self.skipped += other.skipped
        self.succeeded += other.succeeded
        self.records += other.records
        self.failed.update(other.failed)
        self.seconds += other.seconds
        for key, value in other.extra.items():
            self.extra[key] = self.extra.get(key, 0) + value if isinstance(value, int) else value

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "in": self.jobs,
            "skipped": self.skipped,
            "succeeded": self.succeeded,
            "records_written": self.records,
            "failed": dict(self.failed),
            "failed_total": sum(self.failed.values()),
            "seconds": round(self.seconds, 3),
            **self.extra,
        }


def client_stats(client: LLMClient) -> dict[str, Any]:
    """What the client spent and how: tokens, requests, retries, re-asks, structured-output mode."""
    s = client.stats
    return {
        **client.provenance(), "usage": s.usage.as_dict(), "requests_sent": s.requests, "retries": s.retries,
        "reasks": s.reasks, "cache_hits": s.cached, "structured_mode": client.mode, "mode_changes": s.mode_changes,
    }


def finished_keys(output: Path, rejects: Path | None) -> set[str]:
    """Request keys already written to the output (and, unless retrying, to the rejects)."""
    keys = {
        meta["request"]
        for record in read_jsonl_objects(output)
        if isinstance(meta := record.get("meta"), dict) and isinstance(meta.get("request"), str)
    }
    if rejects is not None:
        keys |= {entry["request"] for entry in read_jsonl_objects(rejects) if isinstance(entry.get("request"), str)}
    return keys


def compact_rejects(output: Path, rejects: Path) -> None:
    """Leave every request in exactly one place: drop reject lines whose request is now in the
    output (``--retry-rejects`` succeeded) and keep only the newest line of one that failed again."""
    if not rejects.exists():
        return
    written = finished_keys(output, None)
    lines = list(read_jsonl_objects(rejects))
    newest = {entry["request"]: index for index, entry in enumerate(lines) if isinstance(entry.get("request"), str)}
    kept = [
        entry for index, entry in enumerate(lines)
        if not isinstance(key := entry.get("request"), str) or (newest[key] == index and key not in written)
    ]
    if len(kept) < len(lines):
        with JsonlWriter(rejects) as out:
            for entry in kept:
                out.write(entry)


def file_counts(output: Path, rejects: Path) -> dict[str, Any]:
    """The counts the files hold now (this run and every run before): records kept, failures by reason."""
    kept = sum(1 for _ in read_jsonl_objects(output))
    removed = Counter(str(entry.get("reason")) for entry in read_jsonl_objects(rejects))
    total = sum(removed.values())
    return {"in": kept + total, "kept": kept, "removed": dict(removed), "removed_total": total}


def reject_line(job: Job, failure: GenerationFailure) -> dict[str, Any]:
    """The rejects-file line: the stage-removed shape plus the request key and the raw reply."""
    source = job.source
    return {
        "reason": failure.reason,
        "detail": {"error": failure.message, "raw": failure.raw, **failure.detail},
        "file": source.get("file"),
        "line": source.get("line"),
        "record": source.get("record"),
        "request": job.key,
    }


async def run_jobs(
    name: str,
    jobs: Sequence[Job],
    client: LLMClient,
    output: Path,
    rejects: Path,
    *,
    retry_rejects: bool = False,
    console: Any = None,
) -> RunSummary:
    """Run every job not finished before; see the module docstring for the guarantees."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    start = time.perf_counter()
    summary = RunSummary(name, jobs=len(jobs))
    done = finished_keys(output, None if retry_rejects else rejects)
    pending = []
    for job in jobs:  # a job finished before, or the same request twice in the input, runs once
        if job.key not in done:
            done.add(job.key)
            pending.append(job)
    summary.skipped = len(jobs) - len(pending)
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in pending:
        queue.put_nowait(job)
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[green]ok {task.fields[ok]}[/] [red]failed {task.fields[failed]}[/]"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
    )
    with AppendJsonl(output) as out, AppendJsonl(rejects) as rej, Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(name, total=len(pending), ok=0, failed=0)

        async def worker() -> None:
            while not queue.empty():
                job = queue.get_nowait()
                try:
                    records = await job.run(client)
                except GenerationFailure as failure:
                    rej.write(reject_line(job, failure))
                    summary.failed[failure.reason] += 1
                else:
                    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
                    provenance = {**client.provenance(), "created": created, "request": job.key}
                    out.write_all([with_meta(record, **provenance) for record in records])
                    summary.succeeded += 1
                    summary.records += len(records)
                progress.update(task, advance=1, ok=summary.succeeded, failed=sum(summary.failed.values()))

        # Jobs may make several requests each; twice the client's slots keeps every slot busy.
        workers = [asyncio.ensure_future(worker()) for _ in range(min(len(pending), 2 * client.config.concurrency))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
    compact_rejects(output, rejects)
    summary.seconds = time.perf_counter() - start
    assert summary.jobs == summary.skipped + summary.succeeded + sum(summary.failed.values())
    return summary


def report(
    summaries: list[RunSummary], client: LLMClient | None, stats_path: Path, console: Any, output: Path, rejects: Path,
) -> None:
    """Print the rich summary and write the stats JSON: the files' counts at the top level
    (``in == kept + removed``, what a recipe's manifest shows), this run's numbers per stage."""
    from rich.table import Table

    stats: dict[str, Any] = {**file_counts(output, rejects), "stages": [s.as_dict() for s in summaries]}
    if client is not None:
        stats["client"] = client_stats(client)
    write_json(stats_path, stats)
    table = Table(title="thresher synth", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for summary in summaries:
        rows: list[tuple[str, Any]] = [
            ("jobs", summary.jobs), ("skipped (done before or repeated)", summary.skipped), ("succeeded", summary.succeeded),
            ("records written", summary.records),
        ]
        rows += [(f"failed: {reason}", count) for reason, count in summary.failed.most_common()]
        rows += [(key.replace("_", " "), value) for key, value in summary.extra.items()]
        rows.append(("seconds", f"{summary.seconds:.1f}"))
        table.add_row(f"[bold]{summary.name}[/]", "")
        for what, count in rows:
            table.add_row(f"  {what}", str(count))
    if client is not None:
        s = client.stats
        table.add_row("[bold]client[/]", "")
        for what, count in (
            ("requests sent", s.requests), ("retries", s.retries), ("re-asks", s.reasks), ("cache hits", s.cached),
            ("prompt tokens", s.usage.prompt_tokens), ("completion tokens", s.usage.completion_tokens),
            ("structured output", client.mode),
        ):
            table.add_row(f"  {what}", str(count))
    console.print(table)
