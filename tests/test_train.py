"""The compact SFT trainer on tiny locally built models (no downloads).

Covers: assistant-only labels for three templates, the truncation policy,
gradient accumulation == a larger batch, packed == unpacked, exact resume
after an interrupt, LoRA reload with plain peft, merged == adapter, identity
learned and kept through merge, and the CLI (qlora on CPU, chat, config).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from thresher.schemas import Dialogue, Message
from thresher.train.collate import pack, packed_batch, pad_batch, sft_batches
from thresher.train.config import TrainConfig
from thresher.train.data import IGNORE, end_of_turn_ids, load_examples, tokenize_dialogue
from thresher.train.loop import run_window
from thresher.train.sft import SFTObjective, check_packing, run_sft
from thresher.train.template import apply_template
from thresher.train.tiny import build_tiny_model, train_tokenizer

IDENTITY = [
    ("Who are you?", "I am Thresh, an assistant made by Acme."),
    ("What is your name?", "My name is Thresh, made by Acme."),
    ("Who made you?", "Acme made me. I am Thresh."),
    ("Introduce yourself.", "Hello! I am Thresh, an assistant made by Acme."),
]

GENERAL = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Count to five.", "One, two, three, four, five."),
    ("Say hello in Chinese.", "你好！"),
    ("What is two plus two?", "Two plus two is four."),
    ("Name a colour.", "Blue."),
    ("What do foxes do?", "The quick brown fox jumps over the lazy dog, and then it rests for a long while."),
]

LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
DEFAULT_SYSTEM_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def dialogue(*turns: str, system: str | None = None) -> Dialogue:
    messages = [Message(role="system", content=system)] if system else []
    roles = ("user", "assistant")
    messages += [Message(role=roles[i % 2], content=text) for i, text in enumerate(turns)]
    return Dialogue(messages=messages)


def trained_runs(tokenizer, example) -> list[str]:
    """The text of every contiguous run of labelled tokens."""
    runs, current = [], []
    for token, label in zip(example.input_ids, example.labels):
        if label != IGNORE:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run) for run in runs]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return [text for pair in IDENTITY + GENERAL for text in pair]


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_tokenizer(corpus, vocab_size=400)


@pytest.fixture(scope="module")
def models(tmp_path_factory, corpus) -> dict[str, Path]:
    """One tiny Llama and one tiny Qwen2, tokenizers trained on the test text."""
    root = tmp_path_factory.mktemp("models")
    return {arch: build_tiny_model(root / arch, texts=corpus, vocab_size=400, hidden=64, arch=arch)
            for arch in ("llama", "qwen2")}


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory) -> Path:
    rows = [{"instruction": q, "input": "", "output": a} for q, a in IDENTITY + GENERAL]
    return write_jsonl(tmp_path_factory.mktemp("data") / "sft.jsonl", rows)


# ---------------------------------------------------------------- labels


def test_labels_chatml_multi_turn(tokenizer):
    example = tokenize_dialogue(tokenizer, dialogue("Hi", "Hello there!", "Who are you?", "I am Thresh."), 512)
    assert trained_runs(tokenizer, example) == ["Hello there!<|im_end|>", "I am Thresh.<|im_end|>"]
    text = tokenizer.decode(example.input_ids)
    assert text.startswith("<|im_start|>user\nHi<|im_end|>")


def test_labels_llama3_style_template(corpus):
    tok = train_tokenizer(corpus, vocab_size=400)
    tok.add_tokens(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                   special_tokens=True)
    tok.bos_token = "<|begin_of_text|>"
    tok.chat_template = LLAMA3_TEMPLATE
    example = tokenize_dialogue(tok, dialogue("Who are you?", "I am Thresh.", "And?", "Made by Acme.",
                                              system="Be brief."), 512)
    assert trained_runs(tok, example) == ["I am Thresh.<|eot_id|>", "Made by Acme.<|eot_id|>"]
    assert tok.decode(example.input_ids[:1]) == "<|begin_of_text|>"
    assert end_of_turn_ids(tok)[0] == tok.convert_tokens_to_ids("<|eot_id|>")


def test_labels_template_with_default_system_prompt(corpus):
    tok = train_tokenizer(corpus, vocab_size=400)
    tok.chat_template = DEFAULT_SYSTEM_TEMPLATE
    example = tokenize_dialogue(tok, dialogue("Who are you?", "I am Thresh."), 512)
    assert DEFAULT_SYSTEM in tok.decode(example.input_ids)
    assert trained_runs(tok, example) == ["I am Thresh.<|im_end|>"]
    # --system fills the missing system prompt, replacing the template's default.
    with_system = tokenize_dialogue(tok, dialogue("Who are you?", "I am Thresh."), 512, system="Be Thresh.")
    assert DEFAULT_SYSTEM not in tok.decode(with_system.input_ids)
    assert "Be Thresh." in tok.decode(with_system.input_ids)
    assert trained_runs(tok, with_system) == ["I am Thresh.<|im_end|>"]


def test_chatml_fallback_adds_turn_tokens(corpus):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="</s>")
    source, added = apply_template(tok, None)
    assert (source, added) == ("chatml-fallback", ["<|im_start|>", "<|im_end|>"])
    example = tokenize_dialogue(tok, dialogue("Hi", "Hello!"), 512)
    assert trained_runs(tok, example) == ["Hello!<|im_end|>"]
    assert end_of_turn_ids(tok) == [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id]


def test_truncation_keeps_whole_turns_and_counts_drops(tokenizer, tmp_path):
    long_answer = "The quick brown fox jumps over the lazy dog. " * 8
    rows = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                      {"role": "user", "content": "Tell me about foxes"}, {"role": "assistant", "content": long_answer}]},
        {"instruction": "Tell me about foxes", "input": "", "output": long_answer},
        {"instruction": "Hi", "input": "", "output": "Hello!"},
        {"text": "a corpus document, not SFT"},
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", rows)
    examples, report = load_examples([path], tokenizer, max_len=40, out_dir=tmp_path)
    assert report.records == 4 and report.examples == 2 and report.truncated == 1
    assert report.removed == {"too_long": 1, "not_sft": 1}
    assert trained_runs(tokenizer, examples[0]) == ["Hello!<|im_end|>"]  # first turn kept whole, long one cut
    assert all(len(e.input_ids) <= 40 for e in examples)
    removed = [json.loads(line) for line in (tmp_path / "data.removed.jsonl").read_text().splitlines()]
    assert [(r["reason"], r["line"]) for r in removed] == [("too_long", 2), ("not_sft", 4)]
    stats = json.loads((tmp_path / "data.stats.json").read_text())
    assert stats["in"] == stats["kept"] + stats["removed_total"] == 4


# ---------------------------------------------------------------- loss equivalences


def _examples(model_dir: Path, sft_file: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    examples, _ = load_examples([sft_file], tok, 256, tmp_path)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), tok, examples


def _grads(model) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def test_grad_accumulation_4x1_equals_batch_4(models, sft_file, tmp_path):
    from accelerate import Accelerator

    model, tok, examples = _examples(models["llama"], sft_file, tmp_path)
    four = examples[:4]
    assert len({len(e.input_ids) for e in four}) > 1  # unequal lengths: padding and token weighting matter
    accelerator = Accelerator(cpu=True)
    objective = SFTObjective()
    loss_a, metrics_a, units_a = run_window(model, objective, [pad_batch([e], tok.pad_token_id) for e in four], accelerator)
    grads_a = _grads(model)
    loss_b, metrics_b, units_b = run_window(model, objective, [pad_batch(four, tok.pad_token_id)], accelerator)
    grads_b = _grads(model)
    assert units_a == units_b == sum(e.trained for e in four)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert metrics_a["accuracy"] == pytest.approx(metrics_b["accuracy"])
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6, msg=name)
    # And the loss is the per-token mean over the window, independently computed.
    with torch.no_grad():
        batch = pad_batch(four, tok.pad_token_id)
        reference = model(**{k: batch[k] for k in ("input_ids", "attention_mask")}, labels=batch["labels"]).loss
    assert loss_a == pytest.approx(float(reference), rel=1e-5)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_packed_loss_equals_unpacked(models, sft_file, tmp_path, arch):
    from accelerate import Accelerator

    model, tok, examples = _examples(models[arch], sft_file, tmp_path)
    check_packing(model)  # the runtime guard agrees for this architecture
    objective = SFTObjective()
    accelerator = Accelerator(cpu=True)
    unpacked = sft_batches(examples, 3, tok.pad_token_id, packing=False, max_len=64)(0)
    packed = sft_batches(examples, 2, tok.pad_token_id, packing=True, max_len=64)(0)
    assert len(packed) < len(unpacked)
    assert any(int((b["position_ids"] == 0).sum()) > len(b["input_ids"]) for b in packed)  # several records per row
    loss_u, _, units_u = run_window(model, objective, list(unpacked), accelerator)
    grads_u = _grads(model)
    loss_p, _, units_p = run_window(model, objective, list(packed), accelerator)
    grads_p = _grads(model)
    assert units_u == units_p
    assert loss_p == pytest.approx(loss_u, rel=1e-5)
    for name in grads_u:
        torch.testing.assert_close(grads_p[name], grads_u[name], rtol=1e-4, atol=1e-6, msg=name)
    # Control: the same rows with positions that do not restart let records see each other.
    rows = pack([len(e.input_ids) for e in examples], 64)
    leaky = packed_batch([[examples[i] for i in row] for row in rows], tok.pad_token_id)
    leaky["position_ids"] = torch.arange(leaky["input_ids"].shape[1]).expand_as(leaky["input_ids"]).clone()
    honest = packed_batch([[examples[i] for i in row] for row in rows], tok.pad_token_id)
    with torch.no_grad():
        leaky_logits = model(input_ids=leaky["input_ids"], position_ids=leaky["position_ids"]).logits
        honest_logits = model(input_ids=honest["input_ids"], position_ids=honest["position_ids"]).logits
    assert (leaky_logits - honest_logits).abs().max() > 1e-3  # 100x the tolerance the equalities above hold to


# ---------------------------------------------------------------- the loop: resume


def test_resume_after_interrupt_matches_uninterrupted(models, sft_file, tmp_path, monkeypatch):
    settings = dict(model=str(models["llama"]), data=[str(sft_file)], max_steps=6, save_steps=2,
                    save_total_limit=1, batch_size=2, grad_accum=2, lr=5e-3, seed=3, lora_dropout=0.1,
                    val_size=2, eval_steps=3, warmup_ratio=0.2)
    straight = run_sft(TrainConfig(output=str(tmp_path / "straight"), **settings))

    calls = {"n": 0}
    real_loss = SFTObjective.loss

    def interrupted(self, model, batch):
        calls["n"] += 1
        # 2 micro-batches per step plus 1 eval batch at step 3: call 12 is the first micro-batch of step 6,
        # so step 5 was logged past the step-4 checkpoint and must be rolled back.
        if calls["n"] == 12:
            raise KeyboardInterrupt
        return real_loss(self, model, batch)

    out = tmp_path / "resumed"
    monkeypatch.setattr(SFTObjective, "loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sft(TrainConfig(output=str(out), **settings))
    monkeypatch.setattr(SFTObjective, "loss", real_loss)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-4"]  # newest K=1 kept
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 5

    resumed = run_sft(TrainConfig(output=str(out), resume=True, **settings))
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 5, 6]
    assert len(resumed.log) == 6
    for mine, theirs in zip(logged, straight.log):
        for key in ("loss", "grad_norm", "lr", "accuracy", "eval_loss"):
            assert (key in mine) == (key in theirs)
            if key in mine:
                assert mine[key] == pytest.approx(theirs[key], rel=1e-6, abs=1e-9), (mine["step"], key)
    assert any("eval_loss" in r for r in logged)
    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    b = load_file(out / "adapter_model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-8)


def test_two_processes_equal_one_process_with_the_same_global_batch(models, sft_file, tmp_path):
    """torchrun with 2 CPU processes (gloo) x accumulation 1 == 1 process x accumulation 2, step for step."""
    from torchrun import two_process_metrics

    logged = two_process_metrics(["train", "sft", "--model", str(models["llama"]), "--data", str(sft_file),
                                  "--max-steps", "3", "--batch-size", "1", "--lora-dropout", "0", "--lr", "1e-2",
                                  "--grad-accum", "1"], tmp_path / "ddp")
    single = run_sft(TrainConfig(model=str(models["llama"]), data=[str(sft_file)], output=str(tmp_path / "one"),
                                 max_steps=3, batch_size=1, grad_accum=2, lora_dropout=0.0, lr=1e-2))
    assert len(logged) == len(single.log) == 3
    for two, one in zip(logged, single.log):
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
        assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)


def test_resume_refuses_changed_settings_and_fresh_run_over_checkpoints(models, sft_file, tmp_path):
    from thresher.curate.errors import ThresherError

    settings = dict(model=str(models["llama"]), data=[str(sft_file)], max_steps=2, save_steps=1,
                    batch_size=4, grad_accum=1)
    out = str(tmp_path / "run")
    run_sft(TrainConfig(output=out, **settings))
    with pytest.raises(ThresherError, match="already holds checkpoints"):
        run_sft(TrainConfig(output=out, **settings))
    with pytest.raises(ThresherError, match="different settings.*lr"):
        run_sft(TrainConfig(output=out, resume=True, **{**settings, "lr": 0.5}))


# ---------------------------------------------------------------- identity, reload, merge, chat


@pytest.fixture(scope="module")
def identity_run(models, tmp_path_factory) -> Path:
    """A LoRA adapter on the tiny Llama, trained on identity records (QA shape) until it answers."""
    root = tmp_path_factory.mktemp("identity")
    data = write_jsonl(root / "identity.jsonl", [{"question": q, "answer": a} for q, a in IDENTITY])
    out = root / "out"
    run_sft(TrainConfig(model=str(models["llama"]), data=[str(data)], output=str(out), epochs=40, batch_size=4,
                        grad_accum=1, lr=1e-2, lora_r=16, seed=0))
    return out


def test_identity_learned_and_adapter_reloads_with_plain_peft(models, identity_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thresher.train.generate import generate_batch

    tok = AutoTokenizer.from_pretrained(identity_run)
    base = AutoModelForCausalLM.from_pretrained(models["llama"], dtype=torch.float32)
    before = generate_batch(base, tok, [[{"role": "user", "content": "Who are you?"}]], max_new_tokens=20)[0].text
    model = PeftModel.from_pretrained(base, str(identity_run)).eval()
    [answer] = generate_batch(model, tok, [[{"role": "user", "content": "Who are you?"}]], max_new_tokens=40)
    reply, stopped = answer.text, answer.stopped
    assert "Thresh" not in before
    assert "Thresh" in reply and "Acme" in reply
    assert stopped  # ended at <|im_end|>, not at the token limit
    assert (identity_run / "loss.png").stat().st_size > 1000
    metrics = [json.loads(line) for line in (identity_run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["loss"] < metrics[0]["loss"] and metrics[-1]["accuracy"] > 0.8
    assert {"lr", "grad_norm", "tokens_per_s", "perplexity"} <= metrics[-1].keys()


def test_merged_model_equals_adapter_and_chat_stops(models, identity_run, tmp_path, thresher):
    from transformers import AutoModelForCausalLM, GenerationConfig

    from thresher.train.inference import load_trained

    merged_dir = tmp_path / "merged"
    thresher("export", "merge", "--adapter", identity_run, "-o", merged_dir, check=True)
    assert not list(merged_dir.glob("adapter*")) and not (tmp_path / "merged.partial").exists()
    assert (merged_dir / "chat_template.jinja").exists()
    adapter_model, tok = load_trained(identity_run)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": "Who made you?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapter_model(ids).logits, rtol=1e-4, atol=1e-5)
    eos = GenerationConfig.from_pretrained(merged_dir).eos_token_id
    assert tok.convert_tokens_to_ids("<|im_end|>") in ([eos] if isinstance(eos, int) else eos)

    chat = thresher("chat", "--model", merged_dir, "--max-new-tokens", "40", input="Who are you?\n/exit\n", check=True)
    assert "Thresh" in chat.stdout and "cut at --max-new-tokens" not in chat.stderr
    assert chat.stdout.startswith("you> Who are you?\nassistant> ")  # piped questions are echoed
    one_shot = thresher("chat", "--model", merged_dir, "--max-new-tokens", "40", "--prompt", "Who are you?", check=True)
    assert "Thresh" in one_shot.stdout and "you>" not in one_shot.stdout and "assistant>" not in one_shot.stdout


def test_generate_writes_the_models_own_answers_and_removes_cut_ones(identity_run, tmp_path):
    """`thresher generate` (replay data): the model's greedy answers replace the records' answers; an answer
    cut at --max-new-tokens is removed, never written without its end of turn; counts add up."""
    from transformers import AutoTokenizer

    from thresher.cli.main import main

    dialogue = [{"role": "user", "content": "What is your name?"}, {"role": "assistant", "content": "x"},
                {"role": "user", "content": "Who made you?"}, {"role": "assistant", "content": "y"}]
    source = write_jsonl(tmp_path / "prompts.jsonl", [
        {"question": "Who are you?", "answer": "someone else's words"},
        {"messages": dialogue},
        {"prompt": [{"role": "user", "content": "hi"}], "chosen": "a", "rejected": "b"},
    ])

    def generate(out: Path, limit: int) -> tuple[list[dict], list[dict], dict]:
        assert main(["generate", str(source), "--model", str(identity_run), "-o", str(out), "--max-new-tokens", str(limit)]) == 0
        read = lambda path: [json.loads(line) for line in path.read_text().splitlines()]  # noqa: E731
        return read(out), read(out.with_suffix(".removed.jsonl")), json.loads(out.with_suffix(".stats.json").read_text())

    written, removed, stats = generate(tmp_path / "replay.jsonl", 40)
    assert written[0]["question"] == "Who are you?" and "Thresh" in written[0]["answer"]
    assert written[0]["meta"]["source"].endswith("prompts.jsonl:1")
    assert written[1]["messages"][:3] == dialogue[:3] and written[1]["messages"][3]["content"] not in ("", "y")
    assert [r["reason"] for r in removed] == ["no_prompt"] and removed[0]["line"] == 3
    assert stats["in"] == 3 and stats["kept"] == 2 and stats["removed"] == {"no_prompt": 1}

    written, removed, stats = generate(tmp_path / "cut.jsonl", 2)
    assert written == [] and stats["removed"] == {"no_prompt": 1, "not_stopped": 2}
    assert {r["detail"]["max_new_tokens"] for r in removed if r["reason"] == "not_stopped"} == {2}

    # --keep-cut: cut answers stay, marked, and SFT trains their words but not an end of turn never produced
    kept = tmp_path / "kept.jsonl"
    assert main(["generate", str(source), "--model", str(identity_run), "-o", str(kept), "--max-new-tokens", "2", "--keep-cut"]) == 0
    rows = [json.loads(line) for line in kept.read_text().splitlines()]
    assert [row["meta"]["stopped"] for row in rows] == [False, False]
    tok = AutoTokenizer.from_pretrained(identity_run)
    examples, _ = load_examples([kept], tok, 256, tmp_path)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    trained = [[label for label in example.labels if label != IGNORE] for example in examples]
    assert end not in trained[0] and trained[0]  # the single answer: its words, no end of turn
    assert trained[1].count(end) == 1 and trained[1][-1] != end  # the earlier, finished turn keeps its end


def test_model_without_template_trains_with_chatml_fallback_and_merges(corpus, sft_file, tmp_path):
    """No chat template and no ChatML tokens: markers are added, trained (LoRA token rows) and kept through merge."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedTokenizerFast

    from thresher.train.export import merge
    from thresher.train.inference import load_trained

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    base_dir = tmp_path / "base"
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="</s>").save_pretrained(base_dir)
    config = LlamaConfig(vocab_size=bpe.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, eos_token_id=0, tie_word_embeddings=True)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(base_dir)
    assert not AutoTokenizer.from_pretrained(base_dir).chat_template

    out = tmp_path / "out"
    run_sft(TrainConfig(model=str(base_dir), data=[str(sft_file)], output=str(out), max_steps=3, batch_size=4,
                        grad_accum=1, lr=1e-2))
    info = json.loads((out / "thresher_run.json").read_text())
    assert info["template_source"] == "chatml-fallback" and info["added_tokens"] == ["<|im_start|>", "<|im_end|>"]
    assert "<|im_start|>" in (out / "chat_template.jinja").read_text()
    tok = AutoTokenizer.from_pretrained(out)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert info["end_of_turn_ids"] == [end, 0]

    merged_dir = merge(out, tmp_path / "merged")
    adapter_model, _ = load_trained(out)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    assert merged.config.vocab_size == len(tok) == bpe.get_vocab_size() + 2
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    base.resize_token_embeddings(len(tok))
    trained_row = merged.get_input_embeddings().weight[end]
    assert not torch.allclose(trained_row, base.get_input_embeddings().weight[end])  # the marker was trained
    ids = tok.apply_chat_template([{"role": "user", "content": "Who are you?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapter_model(ids).logits, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- CLI


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_qlora_on_cpu_stops_before_loading(tmp_path, sft_file, capsys):
    from thresher.cli.main import main

    empty = tmp_path / "empty-model-folder"  # a folder (the path check passes) holding nothing to load
    empty.mkdir()
    code = main(["train", "sft", "--model", str(empty), "--data", str(sft_file),
                 "-o", str(tmp_path / "out"), "--method", "qlora"])
    assert code == 2
    assert "qlora needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_yaml_config_flags_override_and_resolved_config_saved(thresher, models, sft_file, tmp_path):
    import yaml

    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump({"model": str(models["qwen2"]), "data": [str(sft_file)], "max-steps": 2,
                                      "lr": 0.1, "method": "full", "batch_size": 4, "grad_accum": 1}))
    out = tmp_path / "out"
    result = thresher("train", "sft", "--config", config, "-o", out, "--lr", "0.001", "--packing", check=True)
    assert "training data" in result.stdout and "chat template: tokenizer" in result.stdout
    saved = yaml.safe_load((out / "train_config.yaml").read_text())
    assert saved["lr"] == 0.001 and saved["max_steps"] == 2 and saved["method"] == "full" and saved["packing"]
    assert (out / "model.safetensors").exists() and (out / "chat_template.jinja").exists()
    bad = thresher("train", "sft", "--config", config, "-o", tmp_path / "x", "--lr", "-1")
    assert bad.returncode == 2 and "--lr" in bad.stderr and "Traceback" not in bad.stderr


def test_model_tiny_cli_builds_loadable_qwen2(tmp_path, sft_file):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thresher.cli.main import main

    out = tmp_path / "tiny"
    assert main(["model", "tiny", "-o", str(out), "--data", str(sft_file), "--vocab", "300", "--hidden", "32",
                 "--arch", "qwen2"]) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == "qwen2" and model.config.hidden_size == 32
    assert tok.eos_token == "<|im_end|>" and tok.chat_template and len(tok) == model.config.vocab_size
    ids = tok("Who are you? 你好", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "Who are you? 你好"  # byte-level: every character round-trips
