"""DPO on tiny local models (no downloads).

Covers: the DPO loss on a fixed batch against the textbook formula with
log-probabilities computed here row by row; the LoRA-disabled reference
equals the base model loaded from disk; the shared prompt is the chat
template's generation prompt; full training's frozen reference (and
``--ref-model``) starts at loss log 2 and stays frozen; the CLI trains,
logs the DPO metrics and saves an adapter plain peft loads; resume after an
interrupt matches the uninterrupted run (LoRA and full references); 2
processes (torchrun, gloo) equal 1 process with the same global batch.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from thresher.schemas import Message
from thresher.train.dpo import DPOConfig, DPOObjective, load_reference, run_dpo
from thresher.train.pairs import PairEncoder, PairExample, pair_batch
from thresher.train.sft import load_model, load_tokenizer
from thresher.train.tiny import build_tiny_model

WORDS = "apple river stone cloud green quick table music light north paper glass bread horse".split()
PAIRS = [
    ("Say something about apple.", "river is good", "stone and music and light is bad"),
    ("Say something about cloud.", "quick table is good", "bread is bad"),
    ("Say something about north?", "paper", "glass horse river stone is good"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    texts = [" ".join(WORDS) + " Say something about is good bad and."] * 4
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts=texts, vocab_size=400)


def dpo_rows(count: int, seed: int = 0) -> list[dict]:
    """Preference rows: the chosen reply says 'and ... is good', the rejected one '... is bad'."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b, c = rng.sample(WORDS, 3)
        rows.append({"conversations": [{"from": "human", "value": f"Say something about {a}."}],
                     "chosen": {"from": "gpt", "value": f"{b} and {c} is good"},
                     "rejected": {"from": "gpt", "value": f"{b} {c} is bad"}})
    return rows


def config_for(model: Path, out: Path, **extra) -> DPOConfig:
    return DPOConfig(model=str(model), data=["unused"], output=str(out), **extra)


def lora_policy(tiny: Path, tmp_path: Path):
    """A LoRA policy whose adapter is not a no-op (random B), in eval mode."""
    config = config_for(tiny, tmp_path)
    tokenizer, _, added = load_tokenizer(config)
    model = load_model(config, tokenizer, added)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model.eval(), tokenizer


def fixed_batch(tokenizer) -> tuple[list[PairExample], dict]:
    encoder = PairEncoder(tokenizer, 512, "chat")
    examples = []
    for prompt, chosen, rejected in PAIRS:
        ids, (c, r), _ = encoder.encode([Message(role="user", content=prompt)], [chosen, rejected])
        examples.append(PairExample(ids, c, r))
    return examples, pair_batch(examples, encoder, tokenizer.pad_token_id)


@torch.no_grad()
def row_logp(model, prompt: list[int], reply: list[int]) -> float:
    """Summed log-probability of ``reply`` after ``prompt``, one unpadded row, token by token."""
    logprobs = model(input_ids=torch.tensor([prompt + reply])).logits[0].float().log_softmax(-1)
    return sum(float(logprobs[len(prompt) + i - 1, token]) for i, token in enumerate(reply))


def base_model(tiny: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()


def test_dpo_loss_matches_formula(tiny, tmp_path):
    policy, tokenizer = lora_policy(tiny, tmp_path)
    examples, batch = fixed_batch(tokenizer)
    beta = 0.2
    with torch.no_grad():
        loss, metrics = DPOObjective(beta).loss(policy, batch)

    base = base_model(tiny)
    expected, margins, correct = 0.0, 0.0, 0
    for e in examples:
        pc, pr = row_logp(policy, e.prompt, e.chosen), row_logp(policy, e.prompt, e.rejected)
        rc, rr = row_logp(base, e.prompt, e.chosen), row_logp(base, e.prompt, e.rejected)
        z = beta * ((pc - rc) - (pr - rr))
        expected += -math.log(1.0 / (1.0 + math.exp(-z)))
        margins += z
        correct += beta * (pc - rc) > beta * (pr - rr)
    assert float(loss) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert float(metrics["rewards/margins"]) == pytest.approx(margins, rel=1e-4, abs=1e-5)
    assert float(metrics["rewards/accuracies"]) == correct
    assert abs(expected - len(examples) * math.log(2)) > 1e-3  # the adapter matters: not the trivial value


def test_lora_disabled_reference_equals_base_model(tiny, tmp_path):
    policy, tokenizer = lora_policy(tiny, tmp_path)
    examples, batch = fixed_batch(tokenizer)
    objective = DPOObjective(beta=0.1)
    reference = objective.reference_logps(policy, batch).tolist()
    base = base_model(tiny)
    rows = [(e.prompt, e.chosen) for e in examples] + [(e.prompt, e.rejected) for e in examples]
    assert reference == pytest.approx([row_logp(base, p, r) for p, r in rows], rel=1e-5, abs=1e-4)
    with_adapter = [row_logp(policy, p, r) for p, r in rows]
    assert all(abs(a - b) > 1e-3 for a, b in zip(with_adapter, reference))  # adapter was really off...
    assert [row_logp(policy, p, r) for p, r in rows] == pytest.approx(with_adapter)  # ...and is back on
    assert sum(p.numel() for p in base.parameters()) < sum(p.numel() for p in policy.parameters())


def test_prompt_is_generation_prompt_shared_by_both_replies(tiny, tmp_path):
    tokenizer, _, _ = load_tokenizer(config_for(tiny, tmp_path))
    examples, batch = fixed_batch(tokenizer)
    messages = [{"role": "user", "content": PAIRS[0][0]}]
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert examples[0].prompt == list(expected)
    first = examples[0]
    assert first.chosen[-1] == first.rejected[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    n = len(examples)
    for row, reply in [(0, first.chosen), (n, first.rejected)]:
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        assert ids[: len(first.prompt)].tolist() == first.prompt  # the same prompt ids in both rows
        assert labels[labels != -100].tolist() == reply  # only the reply is scored


@pytest.mark.parametrize("ref_model", [False, True])
def test_full_reference_is_frozen_start(tiny, tmp_path, ref_model):
    config = config_for(tiny, tmp_path, method="full", ref_model=str(tiny) if ref_model else None)
    tokenizer, _, added = load_tokenizer(config)
    model = load_model(config, tokenizer, added)
    reference = load_reference(config, model, tokenizer, torch.device("cpu"))
    assert reference is not model and not any(p.requires_grad for p in reference.parameters())
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    examples, batch = fixed_batch(tokenizer)
    model.train()
    objective = DPOObjective(0.1, reference)
    loss, _ = objective.loss(model, batch)
    assert loss.item() == pytest.approx(len(examples) * math.log(2), rel=1e-5)  # policy == reference at the start
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    assert all(torch.equal(before[k], v) for k, v in reference.state_dict().items())
    assert objective.loss(model, batch)[0].item() != pytest.approx(len(examples) * math.log(2), rel=1e-5)


def test_lora_dpo_cli_trains_and_saves_adapter(tiny, tmp_path, thresher):
    data = tmp_path / "prefs.json"
    data.write_text(json.dumps(dpo_rows(40)), encoding="utf-8")
    out = tmp_path / "dpo"
    thresher("train", "dpo", "--model", tiny, "--data", data, "-o", out, "--val-size", "8", "--max-steps", "8",
             "--batch-size", "4", "--grad-accum", "1", "--lr", "5e-3", "--beta", "0.1", "--warmup-ratio", "0",
             check=True)
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                "logps/rejected"):
        assert key in log[-1] and f"eval_{key}" in log[-1]
    assert log[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)  # step 1: policy == reference
    assert log[-1]["eval_rewards/margins"] > 0 and log[-1]["eval_rewards/accuracies"] > 0.5
    assert log[-1]["eval_loss"] < math.log(2)

    import warnings

    from peft import PeftModel

    with warnings.catch_warnings():  # peft 0.21 calls a transformers API that 5.x deprecates
        warnings.simplefilter("ignore", FutureWarning)
        policy = PeftModel.from_pretrained(base_model(tiny), str(out))
    assert policy.peft_config["default"].task_type == "CAUSAL_LM"
    assert (out / "train_config.yaml").read_text().count("beta: 0.1") == 1


@pytest.mark.parametrize("method", ["lora", "full"])
def test_resume_after_interrupt_matches_uninterrupted(tiny, tmp_path, monkeypatch, method):
    """The reference survives a resume: LoRA's is the base under the restored adapter, full's the start weights."""
    rng = random.Random(2)
    rows = [{"conversations": [{"from": "human", "value": f"Say something about {a}."}],
             "chosen": {"from": "gpt", "value": f"{b} is good"}, "rejected": {"from": "gpt", "value": f"{b} is bad"}}
            for a, b in (rng.sample(WORDS, 2) for _ in range(16))]
    data = tmp_path / "prefs.json"
    data.write_text(json.dumps(rows), encoding="utf-8")
    settings = dict(model=str(tiny), data=[str(data)], method=method, max_steps=4, save_steps=2, batch_size=4,
                    grad_accum=1, lr=5e-3 if method == "lora" else 1e-3, lora_dropout=0.0, seed=1)
    straight = run_dpo(DPOConfig(output=str(tmp_path / "straight"), **settings))

    calls = {"n": 0}
    real_loss = DPOObjective.loss

    def interrupted(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 4:  # first micro-batch of step 4: step 3 was logged past the step-2 checkpoint
            raise KeyboardInterrupt
        return real_loss(self, model, batch)

    out = tmp_path / "resumed"
    monkeypatch.setattr(DPOObjective, "loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_dpo(DPOConfig(output=str(out), **settings))
    monkeypatch.setattr(DPOObjective, "loss", real_loss)
    resumed = run_dpo(DPOConfig(output=str(out), resume=True, **settings))
    assert [r["step"] for r in resumed.log] == [1, 2, 3, 4]
    for mine, theirs in zip(resumed.log, straight.log):
        for key in ("loss", "rewards/margins", "logps/chosen", "grad_norm"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), (mine["step"], key)
    assert straight.log[-1]["loss"] < math.log(2)


def test_two_processes_equal_one_process_dpo(tiny, tmp_path):
    """torchrun with 2 CPU processes (gloo) x accumulation 1 == 1 process x accumulation 2, step for step."""
    from torchrun import metrics, two_process_metrics

    data = tmp_path / "prefs.json"
    data.write_text(json.dumps(dpo_rows(8)), encoding="utf-8")
    two = two_process_metrics(["train", "dpo", "--model", str(tiny), "--data", str(data), "--max-steps", "2",
                               "--batch-size", "2", "--lora-dropout", "0", "--lr", "1e-2", "--grad-accum", "1"],
                              tmp_path / "ddp")
    run_dpo(DPOConfig(model=str(tiny), data=[str(data)], output=str(tmp_path / "one"), max_steps=2, batch_size=2,
                 lora_dropout=0.0, lr=1e-2, grad_accum=2))
    one = metrics(tmp_path / "one")
    assert len(two) == len(one) == 2
    for a, b in zip(two, one):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
