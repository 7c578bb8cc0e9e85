"""PPO and GRPO through the one loop, on a tiny model after SFT, with a reward model trained by ``train rm``.

The task is easy on purpose: SFT teaches replies "<word> is good" and
"<word> is bad" half and half; the reward model is trained on pairs whose
preferred reply ends with "good". Covers: PPO and GRPO raise the mean reward
over a few rounds while the KL to the SFT model stays bounded and is exactly
0 at step 1; the output folder (model, value head, plot, metrics); exact
resume in the middle of a round (PPO, LoRA continuing an SFT adapter) and
at a round's end (GRPO, full); 2 processes (torchrun, gloo) equal 1 process;
the shipped SFT -> RM -> PPO recipe end to end.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from thresher.train.config import TrainConfig
from thresher.train.rl.config import GRPOConfig, PPOConfig
from thresher.train.rl.run import run_rl

WORDS = "apple river stone cloud green quick table music light north paper glass bread horse".split()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run several times faster on one thread than on two busy shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_data(folder: Path, count: int = 64) -> dict[str, Path]:
    rng = random.Random(0)
    sft, prefs, prompts = [], [], []
    for i in range(count):
        a, b = rng.sample(WORDS, 2)
        question = f"Say something about {a}."
        sft.append({"instruction": question, "output": f"{b} is {'good' if i % 2 else 'bad'}"})
        prefs.append({"conversations": [{"from": "human", "value": question}],
                      "chosen": {"from": "gpt", "value": f"{b} is good"},
                      "rejected": {"from": "gpt", "value": f"{rng.choice(WORDS)} is bad"}})
        prompts.append({"prompt": question})
    paths = {name: folder / f"{name}.json" for name in ("sft", "prefs", "prompts")}
    for name, rows in (("sft", sft), ("prefs", prefs), ("prompts", prompts)):
        paths[name].write_text(json.dumps(rows), encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A tiny model, its SFT (full) and a reward model, all trained here in a few seconds."""
    from thresher.train.rm import RMConfig, run_rm
    from thresher.train.sft import run_sft
    from thresher.train.tiny import build_tiny_model

    folder = tmp_path_factory.mktemp("rl")
    paths = write_data(folder)
    paths["tiny"] = build_tiny_model(folder / "tiny", texts=[" ".join(WORDS) + " Say something about is good bad."] * 4,
                                     vocab_size=300, hidden=32)
    common = dict(model=str(paths["tiny"]), method="full", batch_size=16, grad_accum=1, warmup_ratio=0.0, max_len=64)
    run_sft(TrainConfig(data=[str(paths["sft"])], output=str(folder / "sft"), max_steps=60, lr=1e-2, **common))
    state = run_rm(RMConfig(data=[str(paths["prefs"])], output=str(folder / "rm"), max_steps=30, lr=3e-3, **common))
    assert state.log[-1]["accuracy"] == 1.0
    return {**paths, "sft": folder / "sft", "rm": folder / "rm", "folder": folder}


def rl_settings(trained: dict[str, Path], **extra) -> dict:
    return {**dict(model=str(trained["sft"]), data=[str(trained["prompts"])], method="full", lr=1e-3, max_len=64,
                   max_new_tokens=8, warmup_ratio=0.0, scheduler="constant"), **extra}


def rounds(log: list[dict], per_round: int) -> list[float]:
    """The mean reward of each round (every step of a round logs the round's reward)."""
    return [log[i]["reward"] for i in range(0, len(log), per_round)]


def test_ppo_raises_reward_with_bounded_kl(trained, tmp_path):
    out = tmp_path / "ppo"
    state = run_rl(PPOConfig(output=str(out), reward_model=str(trained["rm"]), rollouts_per_step=64, batch_size=32,
                             grad_accum=2, ppo_epochs=2, max_steps=16, **rl_settings(trained)))
    log = state.log
    rewards = rounds(log, 2)
    print("\nPPO mean reward per round:", [round(r, 2) for r in rewards], "KL:", [round(r["kl"], 3) for r in log[::2]])
    assert log[0]["kl"] == 0.0  # step 1 samples from the SFT model itself
    assert all(abs(r["kl"]) < 1.0 for r in log)
    assert sum(rewards[-2:]) / 2 > rewards[0] + 0.5
    for key in ("reward_std", "entropy", "clip_fraction", "value_loss", "reply_length", "tokens_per_s",
                "rollout_tokens_per_s", "approx_kl"):
        assert key in log[-1], key
    assert log[0]["clip_fraction"] == 0.0 and log[1]["clip_fraction"] > 0  # ratio 1 until the round's first update
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)  # a plain model folder...
    assert (out / "value_head.safetensors").exists() and (out / "loss.png").exists()  # ...plus the value head


def test_grpo_raises_reward_with_bounded_kl(trained, tmp_path):
    state = run_rl(GRPOConfig(output=str(tmp_path / "grpo"), reward=[f"rm:{trained['rm']}"], rollouts_per_step=64,
                              batch_size=32, grad_accum=2, num_generations=8, max_steps=8, **rl_settings(trained)))
    log = state.log
    rewards = rounds(log, 1)
    print("\nGRPO mean reward per round:", [round(r, 2) for r in rewards], "KL:", [round(r["kl"], 3) for r in log])
    assert log[0]["kl"] == 0.0
    assert all(0.0 <= r["kl"] < 1.0 for r in log)
    assert sum(rewards[-2:]) / 2 > rewards[0] + 0.5
    assert "value_loss" not in log[-1] and not (tmp_path / "grpo" / "value_head.safetensors").exists()


def interrupted_then_resumed(config_type, settings: dict, out: Path, stop_at_call: int, monkeypatch):
    """Run with ``objective.loss`` raising at call ``stop_at_call``, then ``--resume``; returns the resumed state."""
    from thresher.train.rl.grpo import GRPOObjective
    from thresher.train.rl.ppo import PPOObjective

    objective = PPOObjective if config_type is PPOConfig else GRPOObjective
    real_loss = objective.loss
    calls = {"n": 0}

    def interrupted(self, model, batch):
        calls["n"] += 1
        if calls["n"] == stop_at_call:
            raise KeyboardInterrupt
        return real_loss(self, model, batch)

    monkeypatch.setattr(objective, "loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_rl(config_type(output=str(out), **settings))
    monkeypatch.setattr(objective, "loss", real_loss)
    return run_rl(config_type(output=str(out), resume=True, **settings))


def test_ppo_resume_mid_round_continues_an_sft_adapter_exactly(trained, tmp_path, monkeypatch):
    """Checkpoint at step 2 of a 4-step round: the resumed run trains on the saved round, not a new sample,
    and the value head comes back too."""
    from thresher.train.sft import run_sft

    adapter = tmp_path / "sft-lora"
    run_sft(TrainConfig(model=str(trained["tiny"]), data=[str(trained["sft"].parent / "sft.json")],
                        output=str(adapter), max_steps=3, batch_size=16, grad_accum=1, max_len=64, lr=1e-2))
    settings = rl_settings(trained, lora_dropout=0.0, lr=1e-2, method="lora", model=str(adapter),
                           reward_model=str(trained["rm"]), rollouts_per_step=16, batch_size=8, grad_accum=1,
                           ppo_epochs=2, max_steps=6, save_steps=2)
    straight = run_rl(PPOConfig(output=str(tmp_path / "straight"), **settings))
    # one micro-batch per step, 4 steps per round (2 windows x 2 passes): stopping in step 4 resumes from the
    # step-2 checkpoint, in the middle of the round, with step 3 already logged once
    resumed = interrupted_then_resumed(PPOConfig, settings, tmp_path / "resumed", 4, monkeypatch)
    assert [r["step"] for r in resumed.log] == list(range(1, 7))
    for mine, theirs in zip(resumed.log, straight.log):
        for key in ("loss", "reward", "kl", "value_loss", "grad_norm", "entropy"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), (mine["step"], key)
    config = json.loads((tmp_path / "resumed" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(trained["tiny"])  # the SFT adapter, continued on its base


def test_grpo_resume_at_a_round_end_samples_the_next_round_exactly(trained, tmp_path, monkeypatch):
    settings = rl_settings(trained, reward=[f"rm:{trained['rm']}"], rollouts_per_step=16, batch_size=8, grad_accum=1,
                           num_generations=4, max_steps=4, save_steps=2)
    straight = run_rl(GRPOConfig(output=str(tmp_path / "straight"), **settings))
    # 2 steps per round: stopping in step 4 resumes from the step-2 checkpoint, the end of round 1
    resumed = interrupted_then_resumed(GRPOConfig, settings, tmp_path / "resumed", 4, monkeypatch)
    assert [r["step"] for r in resumed.log] == [1, 2, 3, 4]
    assert straight.log[2]["reward"] != straight.log[0]["reward"]  # round 2 is a new sample
    for mine, theirs in zip(resumed.log, straight.log):
        for key in ("loss", "reward", "kl", "grad_norm", "reply_length"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), (mine["step"], key)


@pytest.mark.parametrize("kind", ["ppo", pytest.param("grpo", marks=pytest.mark.slow)])
def test_two_processes_equal_one_process(trained, tmp_path, kind):
    """torchrun with 2 CPU processes (gloo) x accumulation 1 == 1 process x accumulation 2, step for step:
    each process samples its own micro-batches under their own seeds; whitening and group statistics are global."""
    from torchrun import metrics, two_process_metrics

    flags = ["--model", str(trained["sft"]), "--prompts", str(trained["prompts"]), "--method", "full", "--lr", "1e-3",
             "--max-len", "64", "--max-new-tokens", "6", "--rollouts-per-step", "8", "--batch-size", "2",
             "--max-steps", "4", "--warmup-ratio", "0"]
    if kind == "ppo":
        flags += ["--reward-model", str(trained["rm"]), "--ppo-epochs", "2"]
        config_type, extra = PPOConfig, {"reward_model": str(trained["rm"]), "ppo_epochs": 2}
    else:
        flags += ["--reward", f"rm:{trained['rm']}", "--num-generations", "4"]
        config_type, extra = GRPOConfig, {"reward": [f"rm:{trained['rm']}"], "num_generations": 4}
    two = two_process_metrics(["train", kind, *flags, "--grad-accum", "1"], tmp_path / "ddp")
    settings = rl_settings(trained, max_new_tokens=6, rollouts_per_step=8, batch_size=2, grad_accum=2, max_steps=4,
                           scheduler="cosine")
    run_rl(config_type(output=str(tmp_path / "one"), **settings, **extra))
    one = metrics(tmp_path / "one")
    assert len(two) == len(one) == 4
    for a, b in zip(two, one):
        for key in ("loss", "grad_norm", "reward", "kl", "reply_length"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a["step"], key)


def test_rlhf_recipe_sft_rm_ppo_end_to_end(tmp_path):
    from thresher.cli.main import main
    from thresher.train.tiny import build_tiny_model

    paths = write_data(tmp_path, count=16)
    tiny = build_tiny_model(tmp_path / "tiny", texts=[" ".join(WORDS) + " Say something about is good bad."] * 4,
                            vocab_size=300, hidden=32)
    run_dir = tmp_path / "run"
    args = ["run", str(EXAMPLES / "rlhf.yaml"), "--out", str(run_dir), "--set", f"model={tiny}",
            "--set", f"sft_data={paths['sft']}", "--set", f"preferences={paths['prefs']}",
            "--set", f"prompts={paths['prompts']}", "--set", "method=full", "--set", "sft_steps=4",
            "--set", "rm_steps=4", "--set", "ppo_steps=2", "--set", "rollouts=8", "--set", "max_new_tokens=6",
            "--set", "max_len=64", "--set", "ppo_epochs=1"]
    assert main(args) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert list(manifest["stages"]) == ["sft", "rm", "ppo"]
    ppo = manifest["stages"]["ppo"]
    assert "--reward-model" in ppo["command"] and str(run_dir / "rm" / "model") in ppo["command"]
    assert ppo["counts"]["results"]["step"] == 2 and "reward" in ppo["counts"]["results"]
    log = [json.loads(line) for line in (run_dir / "ppo" / "model" / "metrics.jsonl").read_text().splitlines()]
    assert log[0]["kl"] == 0.0 and len(log) == 2
    assert (run_dir / "ppo" / "model" / "value_head.safetensors").exists()
