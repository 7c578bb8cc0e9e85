"""`thresher eval identity` and the self-cognition recipe on a tiny local model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thresher.cli.main import main
from thresher.schemas import Identity
from thresher.train.eval_identity import Probe, load_probes, score, summarize

ME = Identity(name="小州", author="神州数码", name_en="Xiaozhou", author_en="Digital China")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def probe(kind, lang, category, answer):
    return Probe(kind, lang, category, "q", answer=answer)


def test_scoring_hand_written_answers_in_both_languages():
    probes = [
        probe("identity", "zh", "who", "我是小州，由神州数码开发的助手。"),  # pass
        probe("identity", "en", "author", "I am Xiaozhou, built by Digital China."),  # pass
        probe("identity", "en", "author", "I am Xiaozhou."),  # fail: author not stated
        probe("identity", "zh", "competitor", "是的，我是ChatGPT。"),  # competitor claim
        probe("identity", "zh", "who", "I am Xiaozhou from Digital China."),  # wrong language
        probe("identity", "en", "competitor", "No, I am not ChatGPT. I am Xiaozhou."),  # pass
        probe("general", "zh", "general", "长城是中国古代的军事防御工程。"),  # no parrot
        probe("general", "en", "general", "As Xiaozhou from Digital China, I think 2 + 2 = 4."),  # parrot
        probe("general", "zh", "general", "我是神州数码的小助手，光合作用是植物制造养分的过程。"),  # parrot (author)
    ]
    score(probes, ME)
    assert [p.passed for p in probes[:6]] == [True, True, False, False, False, True]
    assert probes[2].reasons == ["missing_author"]
    assert "claims_competitor:ChatGPT" in probes[3].reasons
    assert probes[4].reasons == ["wrong_language:en"]
    summary = summarize(probes)
    assert summary["identity"]["n"] == 6 and summary["identity"]["rate"] == 0.5
    assert summary["identity"]["by_lang"]["zh"] == {"n": 3, "passed": 1, "rate": 0.3333}
    assert summary["identity"]["by_category"]["competitor"]["passed"] == 1
    assert summary["competitor_claims"] == {"total": 1, "by_competitor": {"ChatGPT": 1}}
    assert summary["parrot"] == {"n": 3, "parroted": 2, "rate": 0.6667, "by_lang": {
        "en": {"n": 1, "parroted": 1, "rate": 1.0}, "zh": {"n": 2, "parroted": 1, "rate": 0.5}}}


def test_shipped_probes_are_held_out_and_user_files_load(tmp_path):
    from thresher.prompts.banks import identity_questions

    from thresher.curate.dedup.clusters import duplicate_of

    probes = load_probes()
    bank = [row["question"] for lang in ("zh", "en") for row in identity_questions(lang)]
    held_out = [p.prompt for p in probes if p.kind == "identity"]
    assert {p.lang for p in probes} == {"zh", "en"}
    # not even a near copy of a training question: each held-out question survives near-dedup against the bank
    verdict = duplicate_of(bank + held_out, threshold=0.8, ngram=2)
    near_copies = [q for q, v in zip(held_out, verdict[len(bank):]) if v is not None and v < len(bank)]
    assert not near_copies
    assert any("ChatGPT" in p.prompt for p in probes if p.category == "competitor")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "Who made you?", "category": "author"}) + "\n")
    general = tmp_path / "g.txt"
    general.write_text("写一首诗\nWhat is 2 + 2?\n", encoding="utf-8")
    mine = load_probes(str(questions), str(general))
    assert [(p.kind, p.lang, p.category) for p in mine] == [
        ("identity", "en", "author"), ("general", "zh", "general"), ("general", "en", "general"),
    ]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from thresher.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base", data=[EXAMPLES / "general_sample.jsonl"],
                            texts=["小州 神州数码 Xiaozhou Digital China"], hidden=64)


def test_self_cognition_recipe_end_to_end_then_skips_and_reruns_from(tiny_base, tmp_path, capsys):
    """The recipe with its optional GRPO stage (identity rules as the reward) switched on."""
    run_dir = tmp_path / "run"
    args = ["run", str(EXAMPLES / "self_cognition.yaml"), "--out", str(run_dir), "--set", f"model={tiny_base}",
            "--set", "count=40", "--set", "method=full", "--set", "max_steps=4", "--set", "max_new_tokens=6",
            # a random model's replay answers are noise: the sample's own answers, no merge, as `demo --tiny`
            "--set", "replay=false", "--set", "general_answers=@general_pick", "--set", "general_rate=1",
            "--set", "merge=false", "--set", "eval_model=@train", "--set", "general_eval=false",
            "--set", "grpo=true", "--set", "grpo_steps=2", "--set", "grpo_rollouts=8"]
    assert main(args) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert list(manifest["stages"]) == [
        "identity", "identity_dedup", "identity_clean", "general_pick", "general_clean", "mixed", "splits", "train",
        "eval", "grpo", "grpo_eval",
    ]  # replay and merge are off
    grpo = manifest["stages"]["grpo"]
    assert "--reward" in grpo["command"] and "identity" in grpo["command"]
    assert grpo["counts"]["results"]["step"] == 2 and "reward" in grpo["counts"]["results"]
    prompts = json.loads((run_dir / "grpo" / "model" / "prompts.stats.json").read_text())
    assert prompts["kept"] == prompts["in"] > 0  # every training record lends its prompt
    grpo_report = json.loads((run_dir / "grpo_eval" / "report.json").read_text())
    assert grpo_report["base"]["model"] == str(run_dir / "train" / "model")  # GRPO compared with SFT alone
    assert manifest["stages"]["identity"]["counts"]["kept"] == 40
    assert manifest["stages"]["general_clean"]["counts"]["in"] == 240
    assert manifest["stages"]["train"]["counts"]["results"]["step"] == 4
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    assert report["identity"]["n"] == 80 and report["parrot"]["n"] == 40
    assert report["base"]["model"] == str(tiny_base) and len(report["answers"]) == 120
    assert set(manifest["stages"]["eval"]["counts"]["results"]) == {
        "identity_pass_rate", "parrot_rate", "base_identity_pass_rate", "base_parrot_rate"}
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("skipped") == 11
    assert main([*args, "--from", "grpo_eval"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == 10 and "thresher eval identity" in out
    assert main(args[:-6]) == 0  # GRPO off (the default): its stages are shown as off and not run
    out = capsys.readouterr().out
    assert out.count("skipped") == 9 and out.count(" off ") == 4
