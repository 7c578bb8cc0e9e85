"""What ``thresher run``'s manifest records about each stage: input hashes, counts, a masked command line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def masked(argv: list[str]) -> list[str]:
    """``argv`` with the value of ``--api-key`` hidden: the manifest and errors must never hold a key."""
    return ["[redacted]" if previous == "--api-key" else arg for arg, previous in zip(argv, ["", *argv[:-1]])]


def content_hash(path: Path) -> str:
    """blake2b of a file's bytes; for a folder, of every file's relative path, size and mtime.

    Folders are model folders or stage outputs: reading a 15 GB base model on
    every rerun to decide whether to skip would cost more than most stages.
    """
    digest = hashlib.blake2b(digest_size=12)
    if path.is_file():
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def collect_counts(stage_dir: Path) -> dict[str, Any]:
    """What a stage reported: counts from its stats JSON files, training and eval headlines."""
    counts: dict[str, Any] = {}
    for stats_file in sorted(stage_dir.rglob("*stats.json")):
        stats = read_json(stats_file)
        if not isinstance(stats, dict):
            continue
        # The files' own counts when the stats give them (synthesis: output and rejects, every run so far);
        # a resumed stage's per-run numbers would undercount what the files hold.
        for part in [stats] if "kept" in stats or "stages" not in stats else stats["stages"]:
            _add_counts(counts, part)
    for path in stage_dir.rglob("metrics.jsonl"):
        lines = path.read_text(encoding="utf-8").splitlines()
        if lines:
            last = json.loads(lines[-1])
            keys = ("step", "loss", "eval_loss", "eval_accuracy", "reward", "kl")
            counts["results"] = {k: round(v, 4) for k, v in last.items() if k in keys}
    for path in stage_dir.rglob("report.json"):
        report = read_json(path)
        if isinstance(report, dict) and {"total", "valid", "invalid"} <= report.keys():  # thresher validate
            counts["in"] = report["total"]
            counts["results"] = {"valid": report["valid"], "invalid": report["invalid"]}
        if isinstance(report, dict) and "identity" in report:
            counts["results"] = {
                "identity_pass_rate": report["identity"]["rate"],
                "parrot_rate": report["parrot"]["rate"],
                **({"base_identity_pass_rate": report["base"]["identity"]["rate"],
                    "base_parrot_rate": report["base"]["parrot"]["rate"]} if "base" in report else {}),
            }
    return counts


def read_json(path: Path) -> Any:
    """A JSON file's value, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _add_counts(counts: dict[str, Any], stats: dict[str, Any]) -> None:
    """Sum one stats object into ``counts`` (synthesis names its output count ``records_written``)."""
    aliases = {"records_written": "kept"}
    for key in ("in", "kept", "removed_total", "written", "records_written"):
        if isinstance(stats.get(key), (int, float)):
            name = aliases.get(key, key)
            counts[name] = counts.get(name, 0) + stats[key]
    for field_name in ("removed", "failed"):
        if isinstance(stats.get(field_name), dict):
            removed = counts.setdefault("removed", {})
            for reason, n in stats[field_name].items():
                removed[reason] = removed.get(reason, 0) + n
