"""The Ray engine keeps, removes (with the same reasons) and counts exactly what the local engine does.

One Ray runtime with 2 CPUs serves the whole module. Each test runs a stage on both engines over the
same input (the planted-duplicate corpus, the filter tests' records over JSONL, gzip, JSON and
Parquet, the peer files when present) and compares outputs byte for byte and stats figure by figure.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("ray.data", reason="the Ray engine needs Ray Data: pip install 'thresher[ray]'")

from conftest import PEER_DATA  # noqa: E402
from scale_data import decided, dirty, filter_args, lines, planted  # noqa: E402

from thresher.cli.main import main  # noqa: E402
from thresher.curate.dedup.command import dedup  # noqa: E402
from thresher.curate.engines.local import LocalEngine  # noqa: E402
from thresher.curate.filter.command import filter_paths  # noqa: E402
from thresher.curate.filter.pipeline import FilterJob  # noqa: E402
from thresher.curate.io import shards  # noqa: E402


@pytest.fixture(scope="module")
def ray_engine():
    import ray

    from thresher.curate.engines.ray_engine import RayEngine

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the failing job below travels by value
    yield RayEngine(None, 2)
    ray.shutdown()


@pytest.fixture
def small_pieces(monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 8192)  # several pieces per file, few enough to keep Ray quick


def test_dedup_on_ray_equals_local(tmp_path, ray_engine, small_pieces):
    inputs, against = planted(tmp_path)
    results = []
    for name, engine in (("local", None), ("ray", ray_engine)):
        out = tmp_path / f"{name}.jsonl"
        stats = dedup([str(p) for p in inputs], str(out), threshold=0.6, keep="score:score",
                      against=[str(against)], engine=engine)
        results.append((out.read_bytes(), (tmp_path / f"{name}.removed.jsonl").read_bytes(), decided(stats)))
        assert stats["engine"] == name
    assert results[0] == results[1]
    assert results[0][2]["duplicates"]["near"] > 10 and results[0][2]["duplicates"]["against"] > 5
    # Sharded output, MinHash estimates (--no-verify): the same parts, the same sums.
    stats = [dedup([str(p) for p in inputs], f"{tmp_path}/{name}/", threshold=0.7, verify=False, engine=engine)
             for name, engine in (("local", None), ("ray", ray_engine))]
    assert decided(stats[0]) == decided(stats[1]) and stats[1]["parts"] > 3
    assert lines(tmp_path / "local") == lines(tmp_path / "ray")
    assert lines(tmp_path / "local.removed") == lines(tmp_path / "ray.removed")


def test_filter_on_ray_equals_local(tmp_path, ray_engine, small_pieces):
    files, _ = dirty(tmp_path / "in")

    def run(name: str) -> tuple:
        flags = ["--engine", name, "--workers", "2", "--identity-name", "小州", "--identity-author", "神州数码"]
        out = tmp_path / f"{name}.jsonl"
        stats = filter_paths(filter_args(files, out, *flags))
        sharded = filter_paths(filter_args(files, tmp_path / name, *flags))
        return (out.read_bytes(), (tmp_path / f"{name}.removed.jsonl").read_bytes(), decided(stats),
                lines(tmp_path / name), lines(tmp_path / f"{name}.removed"), decided(sharded))

    local, ray = run("local"), run("ray")
    assert local == ray
    assert local[2]["removed"]["refusal"] > 10 and local[5]["parts"] > 3


def test_validate_stats_and_convert_on_ray_equal_local(tmp_path, ray_engine, small_pieces):
    from thresher.curate.convert import convert_paths
    from thresher.curate.stats import path_stats
    from thresher.curate.validate import validate_paths

    files, planted_rows = dirty(tmp_path / "in")
    inputs = [str(f) for f in files] + sorted(str(p) for p in PEER_DATA.glob("*_demo.json*"))  # when present
    summaries = [validate_paths(inputs, engine=engine).report() for engine in (LocalEngine(2), ray_engine)]
    assert summaries[0] == summaries[1]
    assert {(e["file"], e["line"]) for e in summaries[0]["errors"]} == \
           {where for where, reason in planted_rows.items() if reason != "refusal"}
    inputs = [str(f) for f in files]
    assert path_stats(inputs, LocalEngine(2)) == path_stats(inputs, ray_engine)
    results = []
    for engine in (LocalEngine(2), ray_engine):
        out = tmp_path / f"{engine.name}.messages.jsonl"
        args = SimpleNamespace(paths=inputs, output=str(out), to="messages", rejects=None, fmt=None, system=None,
                               min_margin=0.0, label_template=None, allow_placeholders=False, last_turn=False)
        stage, rejects, _ = convert_paths(args, engine)
        results.append((out.read_bytes(), rejects.read_bytes(), decided(stage.stats())))
    assert results[0] == results[1] and results[0][2]["kept"] > 250


class DiesOnce(FilterJob):
    """A filter job whose worker is killed the first time it reaches piece 1 (no exception, no cleanup)."""

    def __init__(self, args, marker: Path) -> None:
        super().__init__(args)
        self.marker = marker

    def __call__(self, piece):
        if piece.index == 1 and not self.marker.exists():
            self.marker.write_text("killed once")
            os._exit(1)
        return super().__call__(piece)


def test_a_killed_ray_worker_piece_is_redone_without_duplicating_output(tmp_path, ray_engine, small_pieces):
    from thresher.curate.filter.pipeline import STAGE
    from thresher.curate.io.shards import expand_inputs, plan
    from thresher.curate.stage import run_pieces

    files, _ = dirty(tmp_path / "in")
    pieces = plan(expand_inputs(files))
    args = filter_args(files, tmp_path / "ray")
    run_pieces(STAGE, ray_engine, DiesOnce(args, tmp_path / "marker"), pieces, f"{tmp_path}/ray/")
    assert (tmp_path / "marker").exists(), "the worker really died"
    filter_paths(filter_args(files, f"{tmp_path}/local/"))
    assert lines(tmp_path / "ray") == lines(tmp_path / "local")
    assert lines(tmp_path / "ray.removed") == lines(tmp_path / "local.removed")
    assert json.loads((tmp_path / "ray.stats.json").read_text())["in"] == sum(
        json.loads(p.read_text())["in"] for p in (tmp_path / "ray.stats").iterdir())


def test_the_recipe_on_ray_writes_what_it_writes_locally(tmp_path, ray_engine):
    recipe = Path(__file__).resolve().parents[1] / "examples" / "clean_corpus.yaml"
    assert main(["run", str(recipe), "--out", str(tmp_path / "local")]) == 0
    assert main(["run", str(recipe), "--out", str(tmp_path / "ray"), "--engine", "ray"]) == 0
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert all("--engine" in stage["command"] for stage in manifest["stages"].values())
    for stage in ("dedup", "filter"):
        for name in ("corpus.jsonl", "corpus.removed.jsonl"):  # filter's removed lines name its input: @dedup
            ray_text = (tmp_path / "ray" / stage / name).read_text(encoding="utf-8")
            assert ray_text.replace(str(tmp_path / "ray"), str(tmp_path / "local")) == \
                   (tmp_path / "local" / stage / name).read_text(encoding="utf-8")
    assert json.loads((tmp_path / "ray" / "check" / "report.json").read_text()) == \
           json.loads((tmp_path / "local" / "check" / "report.json").read_text())


def test_a_model_filter_runs_on_an_actor_pool_with_the_same_result(tmp_path, ray_engine, small_pieces):
    """A fastText quality model: loaded once per worker (an actor each on Ray). Last in the module:
    Ray's worker processes are busy starting actors for a while after."""
    from test_filter_cli import BLANK, GOOD_EN, GOOD_ZH, REFUSAL

    from thresher.curate.filter.quality import train

    files, _ = dirty(tmp_path / "in")
    good = [f"{r['instruction']} {r['output']}" for r in (GOOD_EN, GOOD_ZH)] * 20
    bad = [f"{r['instruction']} {r['output']}" for r in (REFUSAL, BLANK)] * 20
    train(good, bad, tmp_path / "quality.bin", epoch=5)
    for name in ("local", "ray"):
        stats = filter_paths(filter_args(files, tmp_path / name, "--engine", name, "--workers", "2",
                                         "--quality-model", str(tmp_path / "quality.bin"), "--min-quality", "0.5"))
        assert stats["engine"] == name
    assert lines(tmp_path / "local") == lines(tmp_path / "ray")
    assert lines(tmp_path / "local.removed") == lines(tmp_path / "ray.removed")
    assert all("quality" in json.loads(line)["meta"]["filter"]["scores"] for line in lines(tmp_path / "ray"))
