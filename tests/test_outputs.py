"""What every output promises: never an input, one writer at a time, no debris, readable modes.

Commands run in-process through ``thresher.cli.main.main`` (the same dispatch
as the console script); the lock test needs a second process.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from thresher.cli.main import main
from thresher.curate.io.writers import JsonlWriter, atomic_open, write_json

RECORD = {"question": "What is 2+2?", "answer": "4."}


def jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# --- an output is never an input ---------------------------------------------------------------


SIDE_OUTPUTS = [
    ("validate", ["validate", "{in}", "--rejects", "{in}"]),
    ("validate-report", ["validate", "{in}", "--report", "{in}"]),
    ("convert-rejects", ["convert", "{in}", "--to", "qa", "-o", "{dir}/o.jsonl", "--rejects", "{in}"]),
    ("convert-output", ["convert", "{in}", "--to", "qa", "-o", "{in}"]),
    ("dedup-removed", ["dedup", "{in}", "-o", "{dir}/o.jsonl", "--removed", "{in}"]),
    ("dedup-stats", ["dedup", "{in}", "-o", "{dir}/o.jsonl", "--stats", "{in}"]),
    ("dedup-against", ["dedup", "{dir}/other.jsonl", "-o", "{in}", "--against", "{in}"]),
    ("filter-removed", ["filter", "{in}", "-o", "{dir}/o.jsonl", "--removed", "{in}"]),
    ("mix-rate", ["mix", "{in}:0.5", "-o", "{in}"]),
    ("mix-removed", ["mix", "{in}", "-o", "{dir}/o.jsonl", "--removed", "{in}"]),
    ("rename", ["rename", "{in}", "-o", "{in}"]),
    ("split-into-input-folder", ["split", "{dir}/train.jsonl", "-o", "{dir}"]),
    ("derived-sidecar", ["convert", "{dir}/o.rejects.jsonl", "--to", "qa", "-o", "{dir}/o.jsonl"]),
]


@pytest.mark.parametrize(("name", "argv"), SIDE_OUTPUTS, ids=[n for n, _ in SIDE_OUTPUTS])
def test_an_output_that_is_an_input_is_refused_before_anything_is_written(tmp_path, capsys, name, argv):
    data = tmp_path / "in.jsonl"
    for path in (data, tmp_path / "other.jsonl", tmp_path / "train.jsonl", tmp_path / "o.rejects.jsonl"):
        jsonl(path, [RECORD, {"question": "Who?", "answer": "Me."}])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code = main([a.format(**{"in": data, "dir": tmp_path}) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "is the input" in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "nothing may be written"


def test_same_file_means_same_inode_too(tmp_path, capsys):
    data = jsonl(tmp_path / "in.jsonl", [RECORD])
    os.link(data, tmp_path / "hard.jsonl")
    (tmp_path / "soft.jsonl").symlink_to(data)
    for alias in ("hard.jsonl", "soft.jsonl", "./in.jsonl"):
        assert main(["validate", str(data), "--rejects", str(tmp_path / alias)]) == 2
        assert f"{tmp_path / alias}: this output is the input {data}" in capsys.readouterr().err
    assert data.read_text() == json.dumps(RECORD) + "\n"


def test_training_outputs_count_too(tmp_path, capsys):
    data = jsonl(tmp_path / "sft.jsonl", [RECORD])
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert main(["train", "sft", "--model", str(model), "--data", str(data), "-o", str(model)]) == 2
    assert "is the input" in capsys.readouterr().err
    config = tmp_path / "run.yaml"  # paths from a YAML config are claimed as well
    config.write_text(f"model: {model}\ndata: {data}\noutput: {data}\n")
    assert main(["train", "sft", "--config", str(config)]) == 2
    assert f"{data}: this output is the input {data}" in capsys.readouterr().err
    assert main(["model", "tiny", "--data", str(data), "-o", str(data)]) == 2
    assert data.read_text() == json.dumps(RECORD) + "\n" and os.listdir(model) == ["config.json"]


# --- one writer per output -----------------------------------------------------------------------


def test_a_second_run_on_a_locked_output_exits_2_and_the_lock_goes_with_the_run(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    data = jsonl(tmp_path / "in.jsonl", [RECORD])
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from thresher.curate.io.claims import OutputLock\n"
         f"with OutputLock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["convert", str(data), "--to", "qa", "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"another thresher run (process {holder.pid}" in err and len(err.strip().splitlines()) == 1
        assert not out.exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: the lock file stays, stale
        holder.wait()
    from thresher.curate.io.claims import lock_path

    assert lock_path(out).exists()
    assert main(["convert", str(data), "--to", "qa", "-o", str(out)]) == 0  # a dead holder's lock is taken over
    assert not lock_path(out).exists(), "released on exit"


def test_a_lock_file_naming_a_live_process_is_respected_and_a_dead_one_is_not(tmp_path):
    import socket

    from thresher.curate.io.claims import OutputLock, lock_path

    out = tmp_path / "out.jsonl"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path(out).write_text(f"{sleeper.pid} {socket.gethostname()}\n")
        with pytest.raises(Exception, match=f"process {sleeper.pid}"), OutputLock(out):
            pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with OutputLock(out):  # the PID is gone now
        assert lock_path(out).read_text().split()[0] == str(os.getpid())
    assert not lock_path(out).exists()


def test_locks_nest_within_one_process(tmp_path):
    from thresher.curate.io.claims import claim, lock_path

    out = tmp_path / "out.jsonl"
    with claim([], [out]):
        with claim([], [out]), JsonlWriter(out) as writer:
            writer.write(RECORD)
        assert lock_path(out).exists()
    assert not lock_path(out).exists() and out.exists()


# --- temporary files -------------------------------------------------------------------------------


def test_a_killed_writer_leaves_a_temp_file_that_the_next_run_removes(tmp_path):
    out = tmp_path / "big.jsonl"
    code = (
        "import time\nfrom thresher.curate.io.writers import JsonlWriter\n"
        f"with JsonlWriter({str(out)!r}) as w:\n"
        "    for i in range(10**9):\n        w.write({'i': i})\n        if i == 1000: print('writing', flush=True)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    left = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].name.startswith(".big.jsonl.")
    # Files that merely look similar are not ours and stay.
    strangers = [tmp_path / ".big.jsonl.tmp", tmp_path / ".big.jsonl.12.abc.tmp", tmp_path / ".other.jsonl.1.0a0b0c0d.tmp"]
    for path in strangers:
        path.write_text("not ours")
    with JsonlWriter(out) as writer_again:
        writer_again.write(RECORD)
    assert not left[0].exists(), "the dead run's temp file must go"
    assert all(path.exists() for path in strangers)
    assert out.read_text() == json.dumps(RECORD) + "\n"


# --- file modes ------------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_outputs_follow_the_umask_and_replaced_ones_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        data = jsonl(tmp_path / "in.jsonl", [RECORD])
        assert main(["convert", str(data), "--to", "llamafactory", "-o", str(tmp_path / "lf")]) == 0
        assert main(["dedup", str(data), "-o", str(tmp_path / "d.jsonl")]) == 0
        written = [tmp_path / "lf" / "dataset_info.json", tmp_path / "d.jsonl", tmp_path / "d.removed.jsonl",
                   tmp_path / "d.stats.json", *(tmp_path / "lf").glob("*.json*")]
        assert {p.name: mode(p) for p in written} == {p.name: 0o644 for p in written}
        info = tmp_path / "lf" / "dataset_info.json"
        os.chmod(info, 0o664)  # a LLaMA-Factory folder shared with a group
        assert main(["convert", str(data), "--to", "llamafactory", "-o", str(tmp_path / "lf"), "--name", "two"]) == 0
        assert mode(info) == 0o664 and set(json.loads(info.read_text())) == {"lf", "two"}
        os.umask(0o077)
        write_json(tmp_path / "private.json", {})
        assert mode(tmp_path / "private.json") == 0o600
    finally:
        os.umask(old)


@pytest.mark.slow
def test_model_weights_are_readable_as_the_umask_says(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["model", "tiny", "-o", str(tmp_path / "tiny"), "--vocab", "300", "--hidden", "32"]) == 0
    finally:
        os.umask(old)
    weights = list((tmp_path / "tiny").glob("*.safetensors"))
    assert weights and all(mode(p) == 0o644 for p in weights)


def test_atomic_open_leaves_the_target_untouched_on_failure(tmp_path):
    target = tmp_path / "keep.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("new")
        raise RuntimeError("boom")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.json"]
