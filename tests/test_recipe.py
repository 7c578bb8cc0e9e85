"""`thresher run`: stages in order, manifest, skip when unchanged, --from, clear recipe errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thresher.cli.main import main

RECIPE = """
vars: {rate: 0.5, target: messages}
stages:
  - name: convert
    command: convert
    inputs: [data.jsonl]
    options: {to: "${target}"}
    output: converted.jsonl
  - name: mix
    command: mix
    inputs: ["@convert:${rate}"]
    options: {seed: 7}
    output: mixed.jsonl
  - name: check
    command: validate
    inputs: ["@mix"]
    options: {kind: dialogue}
"""


@pytest.fixture
def job(tmp_path):
    rows = [{"instruction": f"question {i}", "input": "", "output": f"answer {i}"} for i in range(40)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "job.yaml"
    recipe.write_text(RECIPE)
    return recipe, tmp_path / "run"


def manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def test_recipe_runs_every_stage_and_writes_a_manifest(job, capsys):
    recipe, run_dir = job
    assert main(["run", str(recipe), "--out", str(run_dir)]) == 0
    stages = manifest(run_dir)["stages"]
    assert list(stages) == ["convert", "mix", "check"]
    assert stages["convert"]["counts"]["in"] == 40
    assert stages["mix"]["counts"] == {"in": 40, "kept": 20, "removed_total": 20, "written": 20, "removed": {"not_sampled": 20}}
    assert stages["mix"]["command"][:2] == ["mix", str(run_dir / "convert" / "converted.jsonl") + ":0.5"]
    assert str(recipe.parent / "data.jsonl") in stages["convert"]["inputs"]
    mixed = [json.loads(line) for line in (run_dir / "mix" / "mixed.jsonl").read_text().splitlines()]
    assert len(mixed) == 20 and all("messages" in r for r in mixed)
    assert "thresher run" in capsys.readouterr().out


def test_rerun_skips_unchanged_stages_and_from_reruns(job, capsys):
    recipe, run_dir = job
    assert main(["run", str(recipe), "--out", str(run_dir)]) == 0
    first = manifest(run_dir)
    mixed = (run_dir / "mix" / "mixed.jsonl").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["run", str(recipe), "--out", str(run_dir)]) == 0
    assert manifest(run_dir) == first
    assert (run_dir / "mix" / "mixed.jsonl").stat().st_mtime_ns == mixed
    assert capsys.readouterr().out.count("skipped") == 3
    assert main(["run", str(recipe), "--out", str(run_dir), "--from", "mix"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == 1 and out.count(" ran ") == 2
    assert (run_dir / "mix" / "mixed.jsonl").stat().st_mtime_ns != mixed


def test_a_changed_input_or_option_reruns_what_depends_on_it(job, capsys):
    recipe, run_dir = job
    assert main(["run", str(recipe), "--out", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["run", str(recipe), "--out", str(run_dir), "--set", "rate=0.25"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == 1  # convert is unchanged
    assert manifest(run_dir)["stages"]["mix"]["counts"]["kept"] == 10
    with open(recipe.parent / "data.jsonl", "a") as handle:
        handle.write(json.dumps({"instruction": "new", "input": "", "output": "row"}) + "\n")
    assert main(["run", str(recipe), "--out", str(run_dir), "--set", "rate=0.25"]) == 0
    assert "skipped" not in capsys.readouterr().out
    assert manifest(run_dir)["stages"]["convert"]["counts"]["in"] == 41


@pytest.mark.parametrize(
    "text, args, message",
    [
        ("stages: [{name: a, command: validate, inputs: ['@nope']}]", [], "@nope names no earlier stage"),
        ("stages: [{name: a, command: validate, inputs: ['${x}']}]", [], "${x} is not defined"),
        ("vars: {}\nstages: [{name: a, command: validate}]", ["--set", "y=1"], "unknown vars: y"),
        ("stages: [{name: a, command: validate, bogus: 1}]", [], "stage 1 (a): key 'bogus' is not a stage key"),
        ("stages: [{name: a, command: validate, inputs: [missing.jsonl]}]", [], "stage a failed (exit 2)"),
        ("stages: [{name: a, command: validate}, {name: a, command: validate}]", [], "used twice"),
    ],
)
def test_recipe_errors_are_clear(tmp_path, capsys, text, args, message):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), *args]) == 2
    assert message in capsys.readouterr().err


def test_api_keys_never_reach_the_manifest(tmp_path, capsys):
    from thresher.cli.recipe import masked

    assert masked(["synth", "answers", "q.txt", "--api-key", "sk-secret", "-o", "x"]) == [
        "synth", "answers", "q.txt", "--api-key", "[redacted]", "-o", "x",
    ]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages: [{name: a, command: synth answers, inputs: [nope.txt], options: {api_key: sk-secret}}]")
    assert main(["run", str(recipe), "--out", str(tmp_path / "run")]) == 2
    captured = capsys.readouterr()
    assert "sk-secret" not in captured.out + captured.err
    manifest = (tmp_path / "run" / "manifest.json").read_text()  # saved before the failure is raised
    assert "sk-secret" not in manifest


def test_shipped_clean_corpus_recipe(tmp_path):
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "examples" / "clean_corpus.yaml"
    assert main(["run", str(recipe), "--out", str(tmp_path / "run")]) == 0
    stages = manifest(tmp_path / "run")["stages"]
    assert stages["check"]["exit"] == 1  # the sample plants a {{name}} document: reported, and the run goes on
    assert stages["check"]["counts"] == {"in": 80, "results": {"valid": 79, "invalid": 1}}
    dedup, filtered = stages["dedup"]["counts"], stages["filter"]["counts"]
    assert dedup["in"] == 80 and dedup["kept"] + dedup["removed_total"] == 80
    assert dedup["removed"] == {"duplicate": dedup["removed_total"]} and dedup["removed_total"] >= 15
    assert filtered["in"] == dedup["kept"] and filtered["kept"] + filtered["removed_total"] == filtered["in"]
    assert filtered["removed"].get("placeholder") == 1


TYPO_IN_LAST_STAGE = """
vars: {n: 20}
stages:
  - name: identity
    command: synth identity
    options: {name: 小州, author: 神州数码, n: "${n}", offline: true}
    output: identity.jsonl
  - name: dedup
    command: dedup
    inputs: ["@identity"]
    output: identity.jsonl
  - name: train
    command: train sft
    options: {model: tiny, data: "@dedup", mehtod: lora, max_step: 3}
    output: model
"""


def test_a_typo_in_the_last_stage_fails_before_the_first_stage_runs(tmp_path, capsys):
    recipe = tmp_path / "job.yaml"
    recipe.write_text(TYPO_IN_LAST_STAGE, encoding="utf-8")
    assert main(["run", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "2 problems, nothing was run" in err
    assert "stage 3 (train): option 'mehtod' is not an option of 'thresher train sft'; did you mean method?" in err
    assert "stage 3 (train): option 'max_step' is not an option of 'thresher train sft'; did you mean max_steps?" in err
    assert not (tmp_path / "run" / "identity").exists()  # the synthesis stage never ran


@pytest.mark.parametrize(
    "stage, message",
    [
        ("{name: a, comand: validate}", "stage 1 (a): key 'comand' is not a stage key; did you mean command?"),
        ("{name: a, command: dedupe}", "stage 1 (a): command 'dedupe' is not a thresher command; did you mean dedup?"),
        ("{name: a, command: train sfx}", "'sfx' is not a subcommand; did you mean sft?"),
        ("{name: a, command: validate, inputs: ['@idenity']}", "@idenity names no earlier stage with an output"),
        ("{name: a, command: convert, inputs: [x.jsonl], options: {to: mesages}, output: o.jsonl}",
         "option 'to': 'mesages' is not one of"),
        ("{name: a, command: train sft, inputs: [x.jsonl]}", "'thresher train sft' takes no inputs"),
    ],
)
def test_recipe_check_names_stage_key_and_closest_name(tmp_path, capsys, stage, message):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(f"stages:\n  - {{name: first, command: synth identity, options: {{name: x, author: y, n: 2, offline: true}}, output: i.jsonl}}\n  - {stage}\n")
    assert main(["run", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err.replace("stage 2 (a)", "stage 1 (a)"), err
    assert not (tmp_path / "run" / "first").exists()


def test_shipped_recipes_run_by_name_and_list_with_real_paths(tmp_path, capsys, monkeypatch):
    assert main(["run", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "clean_corpus" in listed and "self_cognition" in listed
    assert "<examples>" not in listed and str(Path(__file__).resolve().parents[1] / "examples" / "clean_corpus.yaml") in listed
    assert main(["run", "clean_corpus_x"]) == 2
    assert "did you mean clean_corpus?" in capsys.readouterr().err
    # --set paths are relative to where the command runs, not to the recipe's folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps({"text": f"document number {i} " * 8}) + "\n"
                                                 for i in range(6)), encoding="utf-8")
    assert main(["run", "clean_corpus", "--out", "run", "--set", "corpus=mine.jsonl"]) == 0
    stages = manifest(tmp_path / "run")["stages"]
    assert str(tmp_path / "mine.jsonl") in stages["check"]["inputs"]
    assert stages["check"]["counts"]["in"] == 6
    assert str(tmp_path / "run") in capsys.readouterr().out  # the real run folder, not a relative one
