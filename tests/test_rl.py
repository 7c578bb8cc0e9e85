"""RL building blocks on tiny local models (no downloads, no training loop).

Covers: the identity rule reward (pass, graded failures, parroting and blank
replies), prompts from every record shape with their removals, categories
and languages; batched sampling with left padding and the KV cache (stop at
end of turn, length cap, log-probs equal to unpadded rows computed one by
one, per-micro-batch seeds); GAE against the textbook sum; group-relative
advantages; the policy and reference for an SFT adapter (continued, with
the SFT adapter frozen as reference) and for a full model (adapter off).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from thresher.schemas import Identity, Message
from thresher.train.rl.prompts import load_prompts
from thresher.train.rl.rewards import identity_reward

ME = Identity(name="小州", author="神州数码", name_en="Xiaozhou", author_en="Digital China")
WORDS = "apple river stone cloud green quick table music light north paper glass bread horse".split()


@pytest.mark.parametrize("category, lang, reply, expected", [
    ("who", "en", "I am Xiaozhou, made by Digital China.", 1.0),
    ("author", "en", "I am Xiaozhou.", 0.5),  # missing_author
    ("author", "en", "I am an assistant.", 0.0),  # missing_name, missing_author
    ("competitor", "zh", "是的，我是ChatGPT。", -0.5),  # claims ChatGPT, missing name, no denial
    ("who", "zh", "I am Xiaozhou.", 0.5),  # wrong language
    ("general", "en", "Paris is the capital of France.", 1.0),
    ("general", "en", "As Xiaozhou, I say Paris is the capital of France.", -1.0),  # parroting
    ("who", "en", "   ", -1.0),  # blank
])
def test_identity_reward_scores_the_shared_rules(category, lang, reply, expected):
    assert identity_reward(category, reply, ME, lang) == expected


def test_prompts_from_every_record_shape(tmp_path):
    rows = [
        {"conversations": [{"from": "human", "value": "Who are you?"}, {"from": "gpt", "value": "I am X."},
                           {"from": "human", "value": "What can you do?"}, {"from": "gpt", "value": "Things."}]},
        {"instruction": "你是谁？", "output": "我是小州。", "meta": {"category": "who", "lang": "zh"}},
        {"prompt": [{"role": "user", "content": "Rate me"}], "responses": [{"response": "a", "score": 1},
                                                                         {"response": "b", "score": 2}]},
        {"conversations": [{"from": "human", "value": "Say hi."}], "chosen": {"from": "gpt", "value": "hi"},
         "rejected": {"from": "gpt", "value": "no"}},
        {"prompt": "What is 2 + 2?"},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."}]},
        {"question": "Are you ChatGPT?", "category": "competitor", "lang": "en"},
        {"instruction": "Translate", "input": "你好", "system": "You translate."},
        {"text": "a document has no prompt"},
        {"prompt": [{"role": "assistant", "content": "I speak first"}]},
        {"prompt": "word " * 300},
        "not an object",
    ]
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tokenizer = tiny_tokenizer(tmp_path)
    from thresher.train.pairs import PairEncoder

    prompts, report = load_prompts([data], PairEncoder(tokenizer, 512, "chat"), 200, tmp_path)
    assert report.records == 12 and report.prompts == 8
    assert report.removed == {"no_prompt": 1, "invalid": 1, "too_long": 1, "unreadable": 1}
    removed = [json.loads(line) for line in (tmp_path / "prompts.removed.jsonl").read_text().splitlines()]
    assert [r["line"] for r in removed] == [9, 10, 11, 12]
    assert [p.messages[-1].content for p in prompts] == [
        "What can you do?", "你是谁？", "Rate me", "Say hi.", "What is 2 + 2?", "Name a fruit.", "Are you ChatGPT?",
        "Translate\n你好"]
    assert [p.messages[0] for p in prompts][-1] == Message(role="system", content="You translate.")
    # from meta and row fields; "What can you do?" is a bank question; the rest are general prompts
    assert [(p.category, p.lang) for p in prompts] == [
        ("capability", "en"), ("who", "zh"), ("general", "en"), ("general", "en"), ("general", "en"),
        ("general", "en"), ("competitor", "en"), ("general", "zh")]
    expected = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}],
                                             add_generation_prompt=True, return_dict=True)["input_ids"]
    assert prompts[4].ids == list(expected)  # the chat template's generation prompt, as SFT renders it

    from thresher.prompts.banks import identity_questions

    bank = identity_questions("en")[5]
    (tmp_path / "bank.jsonl").write_text(json.dumps({"prompt": bank["question"]}) + "\n")
    (found,), _ = load_prompts([tmp_path / "bank.jsonl"], PairEncoder(tokenizer, 512, "chat"), 200, tmp_path, "bank")
    assert found.category == bank["category"]  # an uncategorised bank question keeps its category


# ---------------------------------------------------------------- tiny model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from thresher.train.tiny import build_tiny_model

    texts = [" ".join(WORDS) + " Say something about is good bad and. What is 2 + 2?"] * 4
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts=texts, vocab_size=400)


def tiny_tokenizer(tmp_path: Path):
    from thresher.train.tiny import train_tokenizer

    return train_tokenizer([" ".join(WORDS) + " What is 2 + 2? 你好 Rate me"], vocab_size=400)


def full_policy(tiny: Path):
    from thresher.train.rl.config import GRPOConfig
    from thresher.train.rl.policy import load_policy
    from thresher.train.sft import load_tokenizer

    config = GRPOConfig(model=str(tiny), data=["unused"], output="unused", method="full", reward=["identity"],
                        name="n", author="a", max_len=256, max_new_tokens=8)
    tokenizer, _, added = load_tokenizer(config)
    policy, reference = load_policy(config, tokenizer, added, torch.device("cpu"))
    return policy.eval(), reference, tokenizer


@torch.no_grad()
def row_logps(model, prompt: list[int], reply: list[int]) -> list[float]:
    """Log-probability of each reply token after the prompt: one unpadded row, no cache."""
    logprobs = model(input_ids=torch.tensor([prompt + reply])).logits[0].float().log_softmax(-1)
    return [float(logprobs[len(prompt) + i - 1, token]) for i, token in enumerate(reply)]


def test_sampling_left_pads_stops_and_scores_like_unpadded_rows(tiny):
    from thresher.train.inference import stop_ids
    from thresher.train.rl.policy import RLModel
    from thresher.train.rl.rollout import sample, token_stats

    policy, _, tokenizer = full_policy(tiny)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             return_dict=True)["input_ids"]
               for text in ("Say something about apple.", "hi", "What is 2 + 2? Say something about north.")]
    assert len({len(p) for p in prompts}) == 3  # really different lengths: left padding at work
    stops = stop_ids(policy, tokenizer)
    # a strong bias towards the stop token makes some replies end early while others run to the cap
    policy.lm_head.bias = torch.nn.Parameter(torch.zeros(policy.config.vocab_size))
    policy.lm_head.bias.data[stops[0]] = 3.0
    batch = sample(policy, prompts, stops, tokenizer.pad_token_id, max_new_tokens=12, temperature=1.0, seed=7)
    lengths = batch["reply_mask"].sum(1).tolist()
    width = batch["reply_mask"].size(1)
    replies = [batch["input_ids"][r, -width:][: n].tolist() for r, n in enumerate(lengths)]
    assert max(lengths) <= 12 and width == max(lengths)
    for reply in replies:
        stop_at = [i for i, t in enumerate(reply) if t in stops]
        assert stop_at in ([], [len(reply) - 1])  # at most one stop token, and it ends the reply
        assert stop_at or len(reply) == 12  # no stop token only where the cap cut the reply
    assert any(n < 12 for n in lengths)

    logits, values = RLModel(policy, value_head=False)(batch, width + 1)
    logps, entropy = token_stats(logits, batch, 1.0, entropy=True)
    assert values is None and entropy.shape == logps.shape and bool((entropy > 0).all())
    for r, (prompt, reply) in enumerate(zip(prompts, replies)):
        assert logps[r, : len(reply)].tolist() == pytest.approx(row_logps(policy, prompt, reply), abs=1e-4)

    again = sample(policy, prompts, stops, tokenizer.pad_token_id, 12, 1.0, seed=7)
    other = sample(policy, prompts, stops, tokenizer.pad_token_id, 12, 1.0, seed=8)
    assert torch.equal(again["input_ids"], batch["input_ids"])  # the seed alone decides the sample
    assert not torch.equal(other["input_ids"], batch["input_ids"])
    state = torch.get_rng_state()
    sample(policy, prompts, stops, tokenizer.pad_token_id, 12, 1.0, seed=9)
    assert torch.equal(state, torch.get_rng_state())  # sampling leaves the training RNG alone


def test_gae_is_the_discounted_sum_of_td_errors():
    from thresher.train.rl.ppo import gae

    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(3, 5, generator=generator)
    values = torch.randn(3, 5, generator=generator)
    lengths = [5, 3, 1]
    for row, n in enumerate(lengths):  # nothing past a reply's end
        rewards[row, n:] = 0
        values[row, n:] = 0
    gamma, lam = 0.9, 0.8
    advantages, returns = gae(rewards, values, gamma, lam)
    for row, n in enumerate(lengths):
        following = lambda t: float(values[row, t + 1]) if t + 1 < n else 0.0  # noqa: E731
        deltas = [float(rewards[row, t]) + gamma * following(t) - float(values[row, t]) for t in range(n)]
        expected = [sum((gamma * lam) ** (k - t) * deltas[k] for k in range(t, n)) for t in range(n)]
        assert advantages[row, :n].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert torch.allclose(returns, advantages + values)


def test_grpo_advantages_are_relative_to_the_group():
    from accelerate import Accelerator

    from thresher.train.rl.config import GRPOConfig
    from thresher.train.rl.grpo import GRPO

    config = GRPOConfig(model="m", data=["d"], output="o", reward=["rm:x"], num_generations=4, batch_size=3,
                        rollouts_per_step=8)
    scores = [1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0]
    local = {p: {"scores": torch.tensor(scores[p * 3: p * 3 + 3])} for p in range(3)}  # groups straddle micro-batches
    metrics = GRPO(config).advantages(local, 8, Accelerator(cpu=True))
    got = torch.cat([local[p]["advantages"] for p in range(3)])
    first = torch.tensor(scores[:4])
    assert got[:4].tolist() == pytest.approx(((first - first.mean()) / (first.std() + 1e-4)).tolist(), rel=1e-5)
    assert got[4:].tolist() == [0.0] * 4 and metrics["groups_without_signal"] == 0.5


def test_policy_and_reference_for_an_adapter_and_a_full_model(tiny, tmp_path):
    """An SFT adapter is trained further, its frozen copy is the reference; a full model's is a frozen copy."""
    from thresher.train.config import TrainConfig
    from thresher.train.inference import load_trained
    from thresher.train.reference import reference_mode
    from thresher.train.rl.config import GRPOConfig
    from thresher.train.rl.policy import RLModel, load_policy
    from thresher.train.sft import load_model, load_tokenizer

    sft_config = TrainConfig(model=str(tiny), data=["unused"], output=str(tmp_path / "sft"))
    tokenizer, _, added = load_tokenizer(sft_config)
    sft = load_model(sft_config, tokenizer, added)
    with torch.no_grad():  # an SFT adapter that is not a no-op
        for name, param in sft.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
    sft.save_pretrained(tmp_path / "sft")
    tokenizer.save_pretrained(tmp_path / "sft")

    config = GRPOConfig(model=str(tmp_path / "sft"), data=["unused"], output="unused", reward=["identity"],
                        name="n", author="a", lora_dropout=0.0)
    policy, reference = load_policy(config, tokenizer, [], torch.device("cpu"))
    assert reference is None and set(policy.peft_config) == {"default", "reference"}
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all(".default." in n for n in trainable)
    ids = torch.tensor([tokenizer("Say something about apple.")["input_ids"]])
    expected, _ = load_trained(tmp_path / "sft")
    with torch.no_grad():
        sft_logits = expected(input_ids=ids).logits
        for param in (p for n, p in policy.named_parameters() if ".default." in n and "lora_B" in n):
            param.add_(0.5)  # the policy moves...
        with reference_mode(policy) as frozen:
            assert torch.allclose(frozen(input_ids=ids).logits, sft_logits, atol=1e-5)  # ...the reference does not
        assert not torch.allclose(policy(input_ids=ids).logits, sft_logits, atol=1e-3)
    assert [n for n, p in policy.named_parameters() if p.requires_grad] == trainable  # restored after the swap
    RLModel(policy, value_head=True).save_pretrained(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "value_head.safetensors"]

    policy, reference, _ = full_policy(tiny)
    assert reference is not policy and not any(p.requires_grad for p in reference.parameters())


def test_llamafactory_ppo_yaml_is_read_by_train_ppo(tmp_path):
    """A LLaMA-Factory ``stage: ppo`` YAML: its reward model, PPO epochs and whitening are translated."""
    from test_llamafactory_user import lf_config

    from thresher.curate.errors import ThresherError
    from thresher.train.rl.config import GRPOConfig, PPOConfig

    (tmp_path / "rm").mkdir()
    config = lf_config(tmp_path, PPOConfig, "ppo", reward_model=tmp_path / "rm", ppo_epochs=2,
                       ppo_whiten_rewards="false", max_new_tokens=64)
    assert (config.reward_model, config.ppo_epochs, config.whiten_rewards, config.max_new_tokens) == (
        str(tmp_path / "rm"), 2, False, 64)
    assert config.reward_specs() == [f"rm:{tmp_path / 'rm'}"] and config.data == [f"{tmp_path / 'data'}:qa,chat"]
    with pytest.raises(ThresherError, match="'ppo' is trained by thresher train ppo, not train grpo"):
        lf_config(tmp_path, GRPOConfig, "grpo", stage="ppo", reward_model=tmp_path / "rm")
    with pytest.raises(ThresherError, match="nowhere: no such model folder"):
        lf_config(tmp_path, PPOConfig, "ppo", reward_model=tmp_path / "nowhere")
