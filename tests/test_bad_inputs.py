"""The bad-input sweep: every data command against every kind of bad input a user can hand it.

For each (command, input): the exit code is the documented one, a failure is one line that names
the file, nothing prints a traceback, and the files add up: every row read is in the output or in
the removed file (in = out + removed), or, when the input cannot be read as a whole, nothing is
written at all. Commands run in-process (``thresher.cli.main.main``); the inputs, the 20 MB line
among them, are made once for the module. Combinations that really train, or that push the 20 MB
line through a whole pipeline, are marked slow.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from thresher.cli.main import main
from thresher.curate.errors import InputError
from thresher.curate.io.readers import read_rows

GOOD = [
    {"instruction": "Name a primary colour.", "input": "", "output": "Red is a primary colour."},
    {"instruction": "说出一种水果。", "input": "", "output": "苹果是一种常见的水果。"},
]


def jsonl(records: list[dict], newline: str = "\n") -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + newline for r in records).encode()


def big_line() -> bytes:
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    text = " ".join(rng.choices(words, k=2_600_000))[:20_000_000]
    return jsonl([{"instruction": "Summarize this.", "input": "", "output": text}])


#: Bad data files by kind (the folder kinds are made by the fixture; output-equal-to-input and side-output per test).
DATA = {
    "empty": lambda: b"",
    "whitespace": lambda: b"  \n\t\n   \n",
    "binary": lambda: random.Random(1).randbytes(4096),
    "nul": lambda: b'{"instruction": "a\x00b", "input": "", "output": "c"}\n\x00\x00\x00\n' + jsonl(GOOD),
    "utf16": lambda: jsonl(GOOD).decode().encode("utf-16"),
    "latin1": lambda: '{"instruction": "Describe the café.", "input": "", "output": "A small café."}\n'.encode("latin-1"),
    "20mb-line": big_line,
    "deep": lambda: jsonl(GOOD[:1]) + b"[" * 100_000 + b"]" * 100_000 + b"\n" + jsonl(GOOD[1:]),
    "wrong-types": lambda: jsonl([{"instruction": 5, "input": "", "output": ["a"]}, {"messages": "hi"},
                                  {"conversations": [{"from": "human", "value": {"x": 1}}]}, GOOD[0]]),
    "crlf": lambda: jsonl(GOOD, newline="\r\n"),
}
KINDS = [*DATA, "folder", "empty-folder", "output-is-input", "side-output-is-input"]
#: Inputs that cannot be read as a whole: exit 2, nothing written. A folder of record files is read file by
#: file (a Spark or Ray output folder); one holding none is refused rather than read as an empty dataset.
UNREADABLE = {"binary", "utf16", "latin1", "empty-folder"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-inputs")
    files = {}
    for kind, make in DATA.items():
        files[kind] = root / f"{kind}.jsonl"
        files[kind].write_bytes(make())
    files["folder"] = root / "folder.jsonl"
    files["folder"].mkdir()
    (files["folder"] / "part-0.jsonl").write_bytes(jsonl(GOOD))
    (files["folder"] / "part-1.jsonl").write_bytes(jsonl(GOOD[:1]))
    (files["folder"] / "_SUCCESS").write_bytes(b"")
    files["empty-folder"] = root / "no-records.jsonl"
    files["empty-folder"].mkdir()
    (files["empty-folder"] / "_SUCCESS").write_bytes(b"")
    return files


@pytest.fixture(scope="module")
def tokenizer_only(tmp_path_factory) -> Path:
    """A model folder holding only a tokenizer: enough for every train case that stops before the model."""
    from thresher.train.tiny import train_tokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer([r["output"] for r in GOOD] * 50, vocab_size=300).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from thresher.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"), texts=[r["output"] for r in GOOD] * 50,
                            vocab_size=300, hidden=32)


def rows(path: Path) -> int:
    return sum(1 for _ in read_rows(path))


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0


# --- each command: its argv, and what its files must add up to ---------------------------------------


def argv_for(command: str, data: Path, out: Path, model: Path | None) -> list:
    """The command line for reading ``data`` and writing under the folder ``out``."""
    return {
        "validate": ["validate", data, "--rejects", out / "rejects.jsonl", "--report", out / "report.json"],
        "convert": ["convert", data, "--to", "messages", "-o", out / "out.jsonl"],
        "dedup": ["dedup", data, "-o", out / "out.jsonl"],
        "filter": ["filter", data, "-o", out / "out.jsonl"],
        "mix": ["mix", data, "-o", out / "out.jsonl"],
        "split": ["split", data, "-o", out / "split", "--val", "0.5"],
        "stats": ["stats", data, "--json"],
        "train": ["train", "sft", "--model", model, "--data", data, "-o", out / "model", "--max-steps", "1",
                  "--batch-size", "1", "--max-len", "64"],
    }[command]


def written(command: str, out: Path) -> tuple[int, int]:
    """(records written, records removed) as the command's files hold them."""
    if command == "validate":
        report = json.loads((out / "report.json").read_text())
        assert report["invalid"] == lines(out / "rejects.jsonl")
        return report["valid"], report["invalid"]
    if command == "split":
        kept = sum(lines(path) for path in (out / "split").glob("*.jsonl") if path.name != "removed.jsonl")
        return kept, lines(out / "split" / "removed.jsonl")
    if command == "train":
        stats = json.loads((out / "model" / "data.stats.json").read_text())
        assert stats["removed_total"] == lines(out / "model" / "data.removed.jsonl")
        return stats["kept"], stats["removed_total"]
    removed = out / ("out.rejects.jsonl" if command == "convert" else "out.removed.jsonl")
    return lines(out / "out.jsonl"), lines(removed)


#: The exit code of a readable input, when it is not 0.
EXIT = {("validate", kind): 1 for kind in ("nul", "deep", "wrong-types")}
EXIT.update({("train", "empty"): 2, ("train", "whitespace"): 2, ("train", "20mb-line"): 2})  # no trainable record
#: Slow: the 20 MB line through every rule, shingle or statistic, and every case that really trains.
SLOW = {("dedup", "20mb-line"), ("filter", "20mb-line"), ("stats", "20mb-line")}
SLOW |= {("train", kind) for kind in ("nul", "deep", "wrong-types", "crlf", "folder")}
COMMANDS = ["validate", "convert", "dedup", "filter", "mix", "split", "stats", "train"]


def cases():
    for command in COMMANDS:
        for kind in KINDS:
            if command == "stats" and kind in ("output-is-input", "side-output-is-input"):
                continue  # stats writes nothing
            marks = [pytest.mark.slow] if (command, kind) in SLOW else []
            yield pytest.param(command, kind, id=f"{command}-{kind}", marks=marks)


def one_error_line(capsys, *names: str) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in (captured.err + captured.out).splitlines() if "error:" in line]
    assert len(errors) == 1, errors
    assert all(name in errors[0] for name in names), errors[0]
    return errors[0]


@pytest.mark.parametrize(("command", "kind"), list(cases()))
def test_bad_input(command, kind, inputs, tmp_path, capsys, request):
    model = None
    if command == "train":
        model = request.getfixturevalue("tiny_model" if (command, kind) in SLOW else "tokenizer_only")
    out = tmp_path / "out"
    out.mkdir()
    if kind in ("output-is-input", "side-output-is-input"):
        check_same_file(command, kind, out, model, capsys)
        return
    data = inputs[kind]
    code = main([str(a) for a in argv_for(command, data, out, model)])
    if kind in UNREADABLE:
        assert code == 2
        one_error_line(capsys, str(data))
        if command == "validate":  # its report is where an unreadable input is reported
            report = json.loads((out / "report.json").read_text())
            assert report["total"] == 0 and str(data) in report["unreadable"][0] and not lines(out / "rejects.jsonl")
        else:
            assert not [p for p in out.rglob("*") if p.is_file()], "nothing may be written for an unreadable input"
        return
    expected = EXIT.get((command, kind), 0)
    assert code == expected, capsys.readouterr()
    if expected == 2:
        one_error_line(capsys, str(data))
        return
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out and "error:" not in captured.err
    if command == "stats":
        assert json.loads(captured.out)  # one JSON object, for a readable input
        return
    kept, removed = written(command, out)
    assert rows(data) == kept + removed, f"{command} {kind}: {rows(data)} in, {kept} out + {removed} removed"


def check_same_file(command: str, kind: str, out: Path, model: Path | None, capsys) -> None:
    """An output (or side output) that is the input: exit 2, one line naming both, the input untouched."""
    data = out / "data.jsonl"
    data.write_bytes(jsonl(GOOD))
    argv = [str(a) for a in argv_for(command, data, out, model)]
    flag = {
        ("validate", "output-is-input"): "--report", ("validate", "side-output-is-input"): "--rejects",
        ("convert", "side-output-is-input"): "--rejects", ("dedup", "side-output-is-input"): "--removed",
        ("filter", "side-output-is-input"): "--removed", ("mix", "side-output-is-input"): "--removed",
    }.get((command, kind), "-o")
    if flag in argv:
        argv[argv.index(flag) + 1] = str(data)
    elif flag != "-o":
        argv += [flag, str(data)]
    else:  # the side output is derived: put the input where the command will write it
        target = {"split": out / "split" / "removed.jsonl", "train": out / "model" / "data.removed.jsonl"}[command]
        target.parent.mkdir(parents=True, exist_ok=True)
        data.rename(target)
        data = target
        argv[argv.index(str(out / "data.jsonl"))] = str(data)
    before = data.read_bytes()
    assert main(argv) == 2
    one_error_line(capsys, str(data), "is the input")
    assert data.read_bytes() == before


# --- `thresher run`: the recipe is the input -----------------------------------------------------------


RECIPES = {
    "empty": b"",
    "whitespace": b"  \n\t\n",
    "binary": random.Random(2).randbytes(2048),
    "nul": b"stages: []\x00\n",
    "utf16": "stages: []\n".encode("utf-16"),
    "latin1": "description: café\nstages: []\n".encode("latin-1"),
    "20mb-line": b"description: " + b"x" * 20_000_000 + b"\nstages: []\n",
    "deep": b"stages: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "wrong-types": b"vars: {a: 1}\nstages: 5\n",
    "wrong-vars": b"vars: [1, 2]\nstages: []\n",
}


@pytest.mark.parametrize("kind", [*RECIPES, "crlf", "folder", "output-is-input", "side-output-is-input"])
def test_bad_recipe(kind, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    data = tmp_path / "data.jsonl"
    data.write_bytes(jsonl(GOOD))
    run_dir = tmp_path / "run"
    if kind in RECIPES:
        recipe.write_bytes(RECIPES[kind])
    elif kind == "folder":
        recipe.mkdir()
    else:
        options = "{rejects: '${recipe_dir}/data.jsonl'}" if kind == "side-output-is-input" else "{}"
        recipe.write_bytes(("stages:\r\n  - name: check\r\n    command: validate\r\n    inputs: [data.jsonl]\r\n"
                            f"    options: {options}\r\n").encode())
    if kind == "output-is-input":
        run_dir = recipe
    before = data.read_bytes()
    code = main(["run", str(recipe), "--out", str(run_dir)])
    assert data.read_bytes() == before
    if kind == "crlf":
        assert code == 0 and (run_dir / "manifest.json").exists()
        return
    assert code == 2
    if kind == "side-output-is-input":  # the stage says why in one line, the run which stage stopped it
        captured = capsys.readouterr()
        errors = [line for line in (captured.err + captured.out).splitlines() if "error:" in line]
        assert "Traceback" not in captured.err + captured.out and len(errors) == 2
        assert errors[0].startswith(f"thresher validate: error: {data}: this output is the input {data}")
        assert errors[1].startswith("thresher run: error: stage check failed (exit 2)")
        return
    message = one_error_line(capsys, str(recipe))
    if kind == "output-is-input":
        assert "is the input" in message


def test_the_reader_refuses_what_the_sweep_calls_unreadable(inputs):
    """The sweep's premise: these inputs fail whole, naming the file; the others read row by row."""
    for kind in UNREADABLE:
        with pytest.raises(InputError) as info:
            list(read_rows(inputs[kind]))
        assert str(inputs[kind]) in str(info.value)
    assert rows(inputs["deep"]) == 3 and rows(inputs["wrong-types"]) == 4 and rows(inputs["crlf"]) == 2
