"""Run a training command under ``torchrun`` with 2 CPU processes, for one-process equivalence tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def metrics(folder: Path) -> list[dict]:
    """The ``metrics.jsonl`` lines of a training output."""
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def two_process_metrics(argv: list[str], out: Path) -> list[dict]:
    """``thresher *argv -o out`` under torchrun, 2 processes (gloo on CPU); returns its metrics."""
    exe = str(Path(sys.executable).with_name("thresher"))
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", exe,
                    *argv, "-o", str(out)],
                   check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    return metrics(out)
