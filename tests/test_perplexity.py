"""Perplexity scoring with tiny causal LMs built locally (config + tokenizer trained on the fly)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from thresher.curate.errors import ThresherError  # noqa: E402
from thresher.curate.filter.perplexity import Perplexity  # noqa: E402

SUBJECTS = ["the cat", "the dog", "my friend", "the teacher", "our neighbour", "小猫", "老师", "我的朋友"]
VERBS = ["reads a book", "walks to school", "drinks some tea", "plays in the garden", "在公园散步", "喝了一杯茶"]
PLACES = ["in the morning", "after lunch", "every day", "on sunday", "每天早上", "周末的时候"]


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(PLACES)}."


def garbage(rng: random.Random) -> str:
    alphabet = "qxzjvkwy。，茶猫书园"
    return "".join(rng.choice(alphabet) for _ in range(40))


def build_tokenizer(folder: Path, corpus: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    from tokenizers import decoders

    tokenizer.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")
    fast.save_pretrained(folder)
    return fast


def build_model(folder: Path, arch: str, vocab_size: int, train_on: list[str] | None = None, tokenizer=None):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    config = config_class(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                          bos_token_id=2, eos_token_id=3, pad_token_id=0)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a 2-layer, 32-wide model: extra threads only fight over shared cores
    model = AutoModelForCausalLM.from_config(config)
    if train_on:
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
        batch = tokenizer([f"<s>{t}" for t in train_on], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model.train()
        for _ in range(40):
            loss = model(**batch, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory) -> Path:
    rng = random.Random(0)
    corpus = [sentence(rng) for _ in range(64)]
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tokenizer(folder, corpus + [garbage(rng) for _ in range(8)])
    return build_model(folder, "llama", len(tokenizer), corpus, tokenizer)


def test_fluent_text_scores_lower_than_garbage(trained_model):
    rng = random.Random(5)
    fluent = [sentence(rng) for _ in range(6)]
    noise = [garbage(rng) for _ in range(6)]
    scores = Perplexity(trained_model, batch_size=4, device="cpu").score(fluent + noise)
    assert max(scores[:6]) < min(scores[6:])


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_batched_scores_equal_one_by_one(tmp_path, arch):
    rng = random.Random(1)
    texts = [sentence(rng) * (i % 3 + 1) for i in range(7)] + [""]
    tokenizer = build_tokenizer(tmp_path, texts)
    build_model(tmp_path, arch, len(tokenizer))
    scorer = Perplexity(tmp_path, batch_size=3, device="cpu")
    batched = scorer.score(texts)
    single = [scorer.score([t])[0] for t in texts]
    assert batched[-1] is None and single[-1] is None
    assert batched[:-1] == pytest.approx(single[:-1], rel=1e-3)
    assert all(1 < s < 10 * len(tokenizer) for s in batched[:-1])  # untrained: near the vocabulary size


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_filter_with_max_ppl_and_percentile(trained_model, tmp_path, thresher):
    rng = random.Random(9)
    rows = [{"instruction": "Tell me something.", "input": "", "output": sentence(rng)} for _ in range(6)]
    rows += [{"instruction": "Tell me something.", "input": "", "output": garbage(rng)} for _ in range(4)]
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    scores = Perplexity(trained_model, device="cpu").score([r["output"] for r in rows])
    cut = (max(scores[:6]) + min(scores[6:])) / 2
    out = tmp_path / "out.jsonl"
    result = thresher("filter", data, "-o", out, "--ppl-model", trained_model, "--max-ppl", str(cut),
                      "--device", "cpu", "--rules", _no_rules(tmp_path))
    assert result.returncode == 0, result.stderr
    kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    removed = [json.loads(line) for line in (tmp_path / "out.removed.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["output"] for r in kept] == [r["output"] for r in rows[:6]]
    assert all(r["reason"] == "perplexity" and r["detail"]["value"] > cut for r in removed) and len(removed) == 4
    assert kept[0]["meta"]["filter"]["scores"]["perplexity"] == pytest.approx(scores[0], rel=1e-3)

    result = thresher("filter", data, "-o", out, "--ppl-model", trained_model, "--ppl-percentile", "60",
                      "--device", "cpu", "--rules", _no_rules(tmp_path))
    assert result.returncode == 0, result.stderr
    stats = json.loads((tmp_path / "out.stats.json").read_text())
    assert stats["in"] == 10 and stats["removed"] == {"perplexity": 4}
    assert stats["ppl_threshold"]["percentile"] == 60


def _no_rules(tmp_path: Path) -> Path:
    """Heuristics off, so that only perplexity decides (garbage would fail them too)."""
    from thresher.curate.filter.heuristics import RULES

    path = tmp_path / "off.yaml"
    path.write_text("".join(f"{name}: {{enabled: false}}\n" for name in RULES), encoding="utf-8")
    return path


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ThresherError, match="not a model folder"):
        Perplexity(tmp_path / "nope")
    with pytest.raises(ThresherError, match="cannot load a causal language model"):
        Perplexity(tmp_path)
