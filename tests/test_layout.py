"""The layout keeps its shape: imports point one way, and every module stays small.

Read from the source with ``ast`` (nothing is imported), so a wrong arrow is
found even in a branch no other test runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "prompts", "curate", "train", "cli")
#: What each package may import at module level (besides itself).
ALLOWED = {
    "schemas": set(),
    "prompts": {"schemas"},
    "curate": {"schemas", "prompts"},
    "train": {"schemas", "prompts", "curate"},
    "cli": {"schemas", "prompts", "curate", "train"},
}
#: ``curate`` may reach into ``train`` only here, and only inside a function: model-based scoring.
LAZY_TRAIN_IN_CURATE = ("curate/filter/",)
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def thresher_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported thresher package, line, at module level) for every ``thresher.*`` import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` blocks count as module level
        if isinstance(node, ast.If):
            top_level |= {id(child) for child in node.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}:{node.lineno}: relative import"
        for name in names:
            parts = name.split(".")
            if parts[0] == "thresher" and len(parts) > 1:
                found.append((parts[1], node.lineno, id(node) in top_level))
    return found


def test_every_import_points_the_allowed_way():
    wrong = []
    for path in modules():
        rel = path.relative_to(ROOT).as_posix()
        own = rel.split("/")[0]
        for target, line, module_level in thresher_imports(path):
            if target == own or target in ALLOWED[own]:
                continue
            lazy_scoring = (own == "curate" and target == "train" and not module_level
                            and rel.startswith(LAZY_TRAIN_IN_CURATE))
            if not lazy_scoring:
                wrong.append(f"{rel}:{line}: {own} -> {target}" + ("" if module_level else " (inside a function)"))
    assert not wrong, "imports against the dependency direction:\n" + "\n".join(wrong)


def test_the_check_sees_a_wrong_arrow(tmp_path):
    """The checker itself: a module-level curate -> cli import and a relative import are both caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom thresher.cli.main import main\n\ndef f():\n    from thresher.train import rm\n")
    assert thresher_imports(bad) == [("cli", 2, True), ("train", 5, False)]
    bad.write_text("from .x import y\n")
    with pytest.raises(AssertionError, match="relative import"):
        thresher_imports(bad)


def test_no_module_is_over_the_size_limit():
    big = [f"{p.relative_to(ROOT)} ({n} lines)" for p in modules()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not big, f"split these along their seams (limit {MAX_LINES} lines): {big}"
