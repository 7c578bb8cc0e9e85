"""`thresher eval general` (reference NLL, drift), batched generation, and both evals against a served model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, Reply, persona_responder

from thresher.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_general_set_is_held_out_from_every_training_and_probe_set():
    from thresher.curate.dedup.clusters import duplicate_of
    from thresher.curate.io.readers import read_rows
    from thresher.prompts.banks import general_heldout

    items = general_heldout()
    assert len(items) >= 100
    assert {item["lang"] for item in items} == {"zh", "en"}
    assert {item["category"] for item in items} == {"factual", "howto", "reasoning", "writing", "code"}
    assert all(item["prompt"].strip() and item["reference"].strip() for item in items)
    licence = (ROOT / "prompts" / "general" / "README.md").read_text()
    assert "Apache-2.0" in licence and "written for thresher" in licence
    # every prompt-like text of the shipped training data and of the other eval sets
    others = []
    for path in sorted((ROOT / "examples").glob("*.jsonl")) + sorted((ROOT / "prompts" / "identity").glob("*.jsonl")):
        for row in read_rows(path):
            data = row.data or {}
            others += [data[k] for k in ("instruction", "prompt", "question") if isinstance(data.get(k), str)]
            others += [m["content"] for m in data.get("messages") or [] if m.get("role") == "user"]
    assert len(others) > 500
    prompts = [item["prompt"] for item in items]
    verdict = duplicate_of(others + prompts, threshold=0.6, ngram=2)
    copies = [(p, (others + prompts)[v]) for p, v in zip(prompts, verdict[len(others):]) if v is not None]
    assert not copies


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny base and a LoRA adapter trained on it briefly (enough to move its answers)."""
    from thresher.train.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("general")
    base = build_tiny_model(root / "base", data=[ROOT / "examples" / "general_sample.jsonl"], hidden=64)
    data = root / "me.jsonl"
    rows = [{"instruction": q, "output": "I am Xiaozhou, made by Digital China."} for q in ("Who are you?", "你是谁？")]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    adapter = root / "lora"
    assert main(["train", "sft", "--model", str(base), "--data", str(data), "-o", str(adapter), "--max-steps", "4",
                 "--lr", "3e-2", "--batch-size", "2", "--grad-accum", "1", "--lora-r", "4"]) == 0
    items = root / "items.jsonl"
    from thresher.prompts.banks import general_heldout

    chosen = general_heldout("en")[:3] + general_heldout("zh")[:3]
    items.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in chosen), encoding="utf-8")
    return base, adapter, items


def reference_nll_by_hand(model_dir, items_file):
    """Per-token NLL of the references with transformers' own loss (mean over labelled tokens, times their count)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thresher.schemas import Dialogue, Message
    from thresher.train.data import IGNORE, tokenize_dialogue

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total = count = 0.0
    for line in Path(items_file).read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        dialogue = Dialogue(messages=[Message(role="user", content=item["prompt"]), Message(role="assistant", content=item["reference"])])
        example = tokenize_dialogue(tokenizer, dialogue, max_len=1 << 30)
        labelled = sum(label != IGNORE for label in example.labels[1:])
        with torch.no_grad():
            loss = model(torch.tensor([example.input_ids]), labels=torch.tensor([example.labels])).loss
        total, count = total + float(loss) * labelled, count + labelled
    return total / count


def test_eval_general_reports_nll_and_drift_and_caches_base_answers(tiny, tmp_path, capsys):
    base, adapter, items = tiny
    cache, report = tmp_path / "cache", tmp_path / "general.json"
    args = ["eval", "general", "--model", str(adapter), "--items", str(items), "--cache", str(cache),
            "--report", str(report), "--max-new-tokens", "12"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "base answers" in out and "6/6" in out  # the progress line shows in piped output
    figures = json.loads(report.read_text())
    assert figures["items"] == 6 and figures["base"] == str(base)
    nll = figures["reference_nll"]
    assert nll["base"] == pytest.approx(reference_nll_by_hand(base, items), abs=1e-3)
    assert nll["relative_change"] == pytest.approx((nll["model"] - nll["base"]) / nll["base"], abs=1e-3)
    assert set(nll["by_lang"]) == {"en", "zh"}
    drift = figures["drift"]
    assert drift["model"] > drift["base"]  # tuning moved the model away from its own greedy answers
    [cached] = list(cache.glob("*.jsonl"))
    lines = cached.read_text().splitlines()
    assert len(lines) == 6

    assert main(args) == 0  # again: the base answers come from the cache
    assert "base answers" not in capsys.readouterr().out
    assert cached.read_text().splitlines() == lines
    assert json.loads(report.read_text())["drift"] == drift


def test_batched_generation_matches_one_at_a_time(tiny):
    from thresher.train.generate import generate_batch
    from thresher.train.inference import load_trained

    model, tokenizer = load_trained(tiny[0])
    conversations = [[{"role": "user", "content": q}] for q in
                     ("Hi", "What is the capital of France? Tell me more.", "你好！我是一个人工智能助手吗？", "1 2 3")]
    batched = generate_batch(model, tokenizer, conversations, max_new_tokens=10, batch_size=4)
    alone = [generate_batch(model, tokenizer, [c], max_new_tokens=10)[0] for c in conversations]
    assert [g.completion_ids for g in batched] == [g.completion_ids for g in alone]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert all(g.prompt_ids and len(g.completion_ids) <= 10 for g in batched)


def logprob_server(model_dir):
    """A Completions handler that scores the prompt with the tiny model, as vLLM does with echo."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()

    def complete(body):
        assert body["echo"] is True and body["max_tokens"] == 0 and body["logprobs"] >= 0
        encoding = tokenizer(body["prompt"], add_special_tokens=False, return_offsets_mapping=True)
        ids = encoding["input_ids"]
        with torch.no_grad():
            logps = model(torch.tensor([ids])).logits[0].log_softmax(-1)
        values = [None] + [float(logps[i - 1, ids[i]]) for i in range(1, len(ids))]
        return {"choices": [{"index": 0, "text": body["prompt"], "finish_reason": "length", "logprobs": {
            "tokens": tokenizer.convert_ids_to_tokens(ids), "token_logprobs": values,
            "text_offset": [start for start, _ in encoding["offset_mapping"]]}}]}

    return complete


def test_served_model_is_scored_by_the_same_rules(tiny, tmp_path, capsys):
    from thresher.train.eval_identity import headline

    base, _, items = tiny
    local = tmp_path / "local.json"
    assert main(["eval", "general", "--model", str(base), "--items", str(items), "--report", str(local)]) == 0
    responder = persona_responder("小州", "神州数码", "Xiaozhou", "Digital China")
    with FakeOpenAI(responder, completions=logprob_server(base)) as server:
        served = tmp_path / "served.json"
        assert main(["eval", "general", "--base-url", server.url, "--model", "tuned", "--compare", "base-model",
                     "--tokenizer", str(base), "--items", str(items), "--cache", str(tmp_path / "cache"),
                     "--report", str(served)]) == 0
        figures = json.loads(served.read_text())
        # the served NLL (echoed log-probabilities) equals the local one for the same weights
        assert figures["reference_nll"]["model"] == pytest.approx(json.loads(local.read_text())["reference_nll"]["model"], abs=1e-3)
        assert figures["base"] == f"base-model @ {server.url}" and figures["drift"]["base"] == figures["drift"]["model"]
        chats = [r for r in server.requests if "messages" in r]
        assert len(chats) == 6 and {r["model"] for r in chats} == {"base-model"} and chats[0]["temperature"] == 0

        identity = tmp_path / "identity.json"
        assert main(["eval", "identity", "--base-url", server.url, "--model", "tuned", "--compare", "base-model",
                     "--name", "小州", "--author", "神州数码", "--name-en", "Xiaozhou", "--author-en", "Digital China",
                     "--general", str(items), "--tokenizer", str(base), "--cache", str(tmp_path / "cache"),
                     "--report", str(identity)]) == 0
    report = json.loads(identity.read_text())
    figures = headline(report)
    assert figures["identity_pass_rate"] == {"base": 1.0, "model": 1.0}
    assert figures["parrot_rate"]["model"] == 1.0  # this persona names itself everywhere: a parrot
    assert figures["competitor_denied_rate"]["model"] == 1.0 and figures["competitor_claims"]["model"] == 0
    assert {"identity_pass_rate_en", "identity_pass_rate_zh", "general_nll", "drift_nll"} <= figures.keys()
    assert figures["general_nll"]["model"] == pytest.approx(report["general"]["reference_nll"]["model"])
    out = capsys.readouterr()
    assert "thresher eval general" in out.out and "asking model: 120/120" in out.out

    with FakeOpenAI(lambda body: Reply("Paris.")) as bare:  # no Completions endpoint, as many servers
        assert main(["eval", "general", "--base-url", bare.url, "--model", "m", "--tokenizer", str(base),
                     "--items", str(items)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "does not return prompt log-probabilities" in err and "vLLM" in err
