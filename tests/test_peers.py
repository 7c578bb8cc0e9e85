"""The peers' own code on thresher's outputs: TRL's trainers and LLaMA-Factory's get_dataset.

The checks live in ``benchmarks/peer_interop.py`` (a user runs the same ones as
a table). Each is skipped, with the reason, when its peer package is not
importable: TRL is in the ``test`` extra; LLaMA-Factory is not (it pins
older transformers and needs torchaudio), so CI skips those and says why.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peer_interop  # noqa: E402

CHECKS = peer_interop.all_checks()
#: The TRL trainer runs beyond one per trainer are slow-marked: they repeat the same path on the other format.
SLOW = {"TRL sft on --to messages", "TRL dpo on --to messages", "TRL reward on --to prompt-completion"}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("peers")


@pytest.mark.parametrize(
    "name, package, check",
    [pytest.param(*c, id=c[0], marks=[pytest.mark.slow] if c[0] in SLOW or c[1] == "llamafactory" else [])
     for c in CHECKS],
)
def test_peer_takes_thresher_output(work, name, package, check):
    reason = peer_interop.missing(package)
    if reason:
        pytest.skip(reason)
    assert check(work)
