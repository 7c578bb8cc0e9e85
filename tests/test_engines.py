"""Inputs and outputs at scale on the local engine: folders and globs in, pieces, parts out, the same
records whatever the number of workers; the partitioned dedup (Ray's task graph, run in-process)
against the one-machine dedup. ``test_ray.py`` checks the same on a Ray runtime."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from scale_data import decided, dirty, filter_args, lines, planted, write_jsonl

from thresher.cli.main import main
from thresher.curate.dedup.command import dedup
from thresher.curate.dedup.distributed import Serial
from thresher.curate.engines import Job, local
from thresher.curate.engines.local import LocalEngine
from thresher.curate.errors import InputError, ThresherError
from thresher.curate.filter.command import filter_paths
from thresher.curate.io import shards
from thresher.curate.io.readers import read_rows
from thresher.curate.io.shards import expand_inputs, plan, read_piece


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of 2 KB and a pool for any input size, so a small corpus really goes through workers."""
    monkeypatch.setattr(shards, "SHARD_BYTES", 2048)
    monkeypatch.setattr(local, "PARALLEL_MIN_BYTES", 0)


def test_folders_and_globs_expand_to_their_record_files_in_order(tmp_path):
    files, _ = dirty(tmp_path / "corpus")
    (tmp_path / "corpus" / "nested").mkdir()
    nested = write_jsonl(tmp_path / "corpus" / "nested" / "e.jsonl", [{"text": "x"}])
    (tmp_path / "corpus" / ".a.jsonl.123.tmp").write_text("half a part")  # a writer's temporary file
    (tmp_path / "corpus" / "_SUCCESS").write_text("")
    (tmp_path / "corpus" / "notes.txt").write_text("not records")
    assert expand_inputs([tmp_path / "corpus"]) == [str(p) for p in (*files, nested)]
    assert expand_inputs([f"{tmp_path}/corpus/*.jsonl*"]) == [str(files[0]), str(files[1])]
    assert expand_inputs([f"{tmp_path}/**/e.jsonl"]) == [str(nested)]
    with pytest.raises(InputError, match="no record files match"):
        expand_inputs([f"{tmp_path}/*.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no record files"):
        expand_inputs([tmp_path / "empty"])


def test_pieces_read_exactly_the_rows_of_the_file(tmp_path):
    files, _ = dirty(tmp_path)
    pieces = plan([str(f) for f in files], shard_bytes=1024)
    by_file = {str(f): [p for p in pieces if p.path == str(f)] for f in files}
    assert len(by_file[str(files[0])]) > 5, "plain JSONL is cut into line-aligned byte ranges"
    assert [p.row_group for p in by_file[str(files[3])]] == [0, 1] and by_file[str(files[3])][1].first_line == 4
    assert len(by_file[str(files[1])]) == len(by_file[str(files[2])]) == 1, "gzip and .json are read whole"
    assert [p.index for p in pieces] == list(range(len(pieces)))
    for path in files:
        expected = [(r.source, r.line, r.data, r.error) for r in read_rows(path)]
        got = [(r.source, r.line, r.data, r.error) for p in by_file[str(path)] for r in read_piece(p)]
        assert got == expected


def test_filter_on_workers_gives_the_records_of_one_process(tmp_path, small_pieces):
    files, planted_rows = dirty(tmp_path / "in")
    results = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.jsonl"
        stats = filter_paths(filter_args(files, out, "--workers", str(workers)))
        results.append((out.read_bytes(), (tmp_path / f"w{workers}.removed.jsonl").read_bytes(), decided(stats)))
        assert stats["workers"] == workers
    assert results[0] == results[1]
    removed = {(r["file"], r["line"]): r["reason"] for r in map(json.loads, lines(tmp_path / "w1.removed.jsonl"))}
    assert {where: removed.get(where) for where in planted_rows} == planted_rows, "every planted row, for its reason"
    stats = results[0][2]
    assert stats["in"] == sum(1 for f in files for _ in read_rows(f)) == stats["kept"] + stats["removed_total"]


def test_sharded_output_parts_removed_parts_and_one_summed_stats_file(tmp_path, small_pieces):
    files, _ = dirty(tmp_path / "in")
    single = filter_paths(filter_args(files, tmp_path / "one.jsonl"))
    out = tmp_path / "out"
    stats = filter_paths(filter_args([tmp_path / "in"], f"{out}/", "--workers", "2"))
    pieces = plan(expand_inputs([tmp_path / "in"]))
    assert stats["parts"] == len(pieces) > 4
    assert sorted(p.name for p in out.iterdir()) == [f"part-{i:05d}.jsonl.gz" for i in range(len(pieces))]
    assert lines(out) == lines(tmp_path / "one.jsonl"), "the parts, in order, are the one-file output"
    assert lines(tmp_path / "out.removed") == lines(tmp_path / "one.removed.jsonl")
    assert decided(stats) | {"parts": None} == decided(single) | {"parts": None}
    removed = [json.loads(line) for line in lines(tmp_path / "out.removed")]
    assert all(Path(r["file"]).exists() and r["line"] >= 1 for r in removed)
    per_part = [json.loads(p.read_text()) for p in sorted((tmp_path / "out.stats").glob("part-*.json"))]
    assert len(per_part) == len(pieces) and sum(p["in"] for p in per_part) == stats["in"]
    assert all(p["in"] == p["kept"] + p["removed_total"] for p in per_part)
    assert json.loads((tmp_path / "out.stats.json").read_text())["in"] == stats["in"]
    # A folder of parts is an input like any other, and a rerun over fewer pieces leaves no stale part.
    again = filter_paths(filter_args([out], tmp_path / "again.jsonl", "--no-meta"))
    assert again["in"] == stats["kept"] and again["removed_total"] == 0
    filter_paths(filter_args(files[1:], f"{out}/"))
    assert len(list(out.iterdir())) == len(plan([str(f) for f in files[1:]]))
    with pytest.raises(ThresherError, match="inside the output folder"):
        filter_paths(filter_args([out], f"{out}/"))


class _Fails(Job):
    """Writes half a piece's parts, then fails."""

    def __call__(self, piece):
        from thresher.curate.stage import PieceStage

        with PieceStage("test", piece, self.parts) as out:
            for row in read_piece(piece):
                out.seen()
                out.keep(row.data)
                raise RuntimeError("the worker fails mid-piece")
        return out.result


def test_a_failed_piece_leaves_no_part_and_a_rerun_writes_it_once(tmp_path):
    from thresher.curate.stage import run_pieces

    source = write_jsonl(tmp_path / "in.jsonl", [{"text": f"Document {i} about rivers, lakes and the sea, long enough to pass."} for i in range(5)])
    pieces = plan([str(source)])
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="mid-piece"):
        run_pieces("test", LocalEngine(1), _Fails(), pieces, f"{out}/")
    leftovers = [p for folder in (out, tmp_path / "out.removed", tmp_path / "out.stats") if folder.exists()
                 for p in folder.iterdir()]
    assert leftovers == [], "no part, no temporary file, no stats part"
    stats = filter_paths(filter_args([source], f"{out}/"))
    assert stats["kept"] == 5 and len(gzip.decompress((out / "part-00000.jsonl.gz").read_bytes()).splitlines()) == 5


class _Dies(Job):
    def __call__(self, piece):
        if piece.index == 1:
            os._exit(3)  # killed: no exception, no cleanup
        return piece.index


def test_a_killed_local_worker_is_a_clear_error_not_a_hang(tmp_path, small_pieces):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "x" * 300}] * 30)
    with pytest.raises(ThresherError, match="worker process died"):
        list(LocalEngine(2).map(_Dies(), plan([str(source)])))


def test_stats_and_convert_on_workers_equal_one_process(tmp_path, small_pieces):
    from types import SimpleNamespace

    from thresher.curate.convert import convert_paths
    from thresher.curate.stats import path_stats

    files, planted_rows = dirty(tmp_path / "in")
    assert path_stats([str(f) for f in files], LocalEngine(2)) == path_stats([str(f) for f in files], LocalEngine(1))
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.messages.jsonl"
        args = SimpleNamespace(paths=[str(f) for f in files], output=str(out), to="messages", rejects=None,
                               fmt=None, system=None, min_margin=0.0, label_template=None,
                               allow_placeholders=False, last_turn=False)
        stage, rejects, _ = convert_paths(args, LocalEngine(workers))
        outputs.append((out.read_bytes(), rejects.read_bytes(), decided(stage.stats())))
    assert outputs[0] == outputs[1]
    rejected = {(r["file"], r["line"]) for r in map(json.loads, outputs[0][1].decode().splitlines())}
    assert rejected == {where for where, reason in planted_rows.items() if reason != "refusal"}, \
        "placeholders, blanks and broken lines are rejected; a refusal is still a valid record"


@pytest.mark.parametrize("options", [
    {"threshold": 0.7},
    {"threshold": 0.7, "verify": False, "keep": "longest"},
    {"threshold": 0.6, "keep": "score:score", "against": True},
    {"exact_only": True},
])
def test_partitioned_dedup_keeps_what_one_machine_keeps(tmp_path, small_pieces, options):
    """Ray's task graph (key shuffle, band-key shuffle, label propagation, decide per component), run
    in this process over three partitions, against the one-machine index (its passes and its last pass,
    the writes, on two processes)."""
    inputs, against = planted(tmp_path)
    options = {**options, "against": [str(against)] if options.get("against") else []}
    results = []
    for name, engine in (("local", None), ("partitioned", Serial(3))):
        out = tmp_path / f"{name}.jsonl"
        stats = dedup([str(p) for p in inputs], str(out), engine=engine, workers=2, **options)
        results.append((out.read_bytes(), (tmp_path / f"{name}.removed.jsonl").read_bytes(), decided(stats)))
    assert results[0] == results[1]
    stats = results[0][2]
    assert stats["duplicates"]["exact"] > 10 and (options.get("exact_only") or stats["duplicates"]["near"] > 10)
    assert not options["against"] or stats["duplicates"]["against"] > 5


def test_partitioned_dedup_writes_the_same_parts(tmp_path, small_pieces):
    inputs, _ = planted(tmp_path)
    local_stats = dedup([str(p) for p in inputs], f"{tmp_path}/local/", threshold=0.7, workers=2)
    parts_stats = dedup([str(p) for p in inputs], f"{tmp_path}/partitioned/", threshold=0.7, engine=Serial(2))
    assert decided(local_stats) == decided(parts_stats) and local_stats["parts"] > 3
    for name in ("", ".removed"):
        assert [p.read_bytes() for p in sorted((tmp_path / f"local{name}").iterdir())] == \
               [p.read_bytes() for p in sorted((tmp_path / f"partitioned{name}").iterdir())]


def test_engine_flags_are_checked(tmp_path, capsys, monkeypatch):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "a document"}])
    assert main(["validate", str(source), "--ray-address", "auto"]) == 2
    assert "--ray-address needs --engine ray" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if Ray were not installed
    assert main(["dedup", str(source), "-o", str(tmp_path / "out.jsonl"), "--engine", "ray"]) == 2
    assert "pip install 'thresher[ray]'" in capsys.readouterr().err


def test_recipe_engine_reaches_the_curation_stages_only(tmp_path):
    from thresher.cli.recipe import Runner, load_recipe

    recipe_path = Path(__file__).resolve().parents[1] / "examples" / "clean_corpus.yaml"
    recipe = load_recipe(recipe_path)
    plain = Runner(recipe, recipe_path, tmp_path)
    on_ray = Runner(recipe.model_copy(update={"engine": "ray", "ray_address": "auto"}), recipe_path, tmp_path)
    for stage in recipe.stages:
        assert on_ray.engine_flags(stage) == ["--engine", "ray", "--ray-address", "auto"]
        assert plain.engine_flags(stage) == []
        assert on_ray.fingerprint(on_ray.argv(stage)) == plain.fingerprint(plain.argv(stage)), \
            "where a stage runs does not change what it writes: no rerun when the engine changes"
        for runner in (plain, on_ray):  # as Runner.run does, so later stages can name this one's output
            runner.outputs[stage.name] = runner.stage_dir(stage) / stage.output
    synth = recipe.stages[0].model_copy(update={"command": "synth identity"})
    assert on_ray.engine_flags(synth) == [], "only curation stages take --engine"
