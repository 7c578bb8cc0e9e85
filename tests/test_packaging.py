"""A regular (non-editable) wheel install works: modules, entry point, prompt data files read via importlib.resources."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pydantic
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The source folders that become ``thresher.<folder>``.
FOLDERS = ("schemas", "prompts", "curate", "train", "cli", "examples")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    return next(out.glob("thresher-*.whl"))


def test_wheel_holds_every_package_and_prompt_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = [p.parent.relative_to(ROOT).as_posix() for top in FOLDERS for p in (ROOT / top).rglob("__init__.py")]
    assert "curate/io/formats" in packages and "cli" in packages
    missing = [package for package in packages if f"thresher/{package}/__init__.py" not in names]
    assert not missing, f"packages missing from the wheel (list them in pyproject.toml): {missing}"
    for example in (ROOT / "examples").glob("*"):  # `thresher demo` runs these from the installed wheel
        if example.suffix in {".yaml", ".jsonl"}:
            assert f"thresher/examples/{example.name}" in names
    for data in (ROOT / "prompts").rglob("*"):
        if data.is_file() and data.suffix in {".md", ".txt", ".yaml", ".json", ".jsonl"}:
            assert f"thresher/prompts/{data.relative_to(ROOT / 'prompts').as_posix()}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "thresher = thresher.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_validates_without_the_source_tree(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True)
    example = tmp_path / "a.jsonl"
    example.write_text('{"question": "q", "answer": "a"}\n')
    deps = Path(pydantic.__file__).parent.parent  # where the dependencies live
    # -I: no site processing, so the editable checkout's import hook is not loaded.
    code = (
        f"import sys; sys.path[:0] = [{str(target)!r}, {str(deps)!r}];"
        "import thresher.schemas, thresher.prompts;"
        f"assert thresher.schemas.__file__.startswith({str(target)!r}), thresher.schemas.__file__;"
        "from thresher.prompts.banks import eval_questions, identity_questions;"
        "assert len(identity_questions('en')) >= 150 and eval_questions();"
        "from thresher.cli.main import main;"
        f"sys.exit(main(['validate', {str(example)!r}]))"
    )
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
