"""Online RL throughput on CPU: thresher's GRPO and PPO against TRL's GRPOTrainer, same run.

Every variant trains the same tiny Llama (full fine-tuning, fp32) from the
same weights on the same prompts (the shipped identity questions and general
prompts, with their categories) with the same reward: thresher's identity
rules (``identity_reward``), called by TRL through a reward function. Each
optimizer step samples 16 replies (4 prompts x 4 for GRPO, 16 prompts for
PPO) of at most --max-new-tokens tokens at temperature 1 and trains on them
once (PPO with --ppo-epochs 1, so a step is one sample-and-update for every
variant); KL weight 0.04 against a reference, so every variant runs a
reference forward. TRL 1.16 has no PPOTrainer (it was removed from TRL and
is not in trl.experimental), so PPO has no peer row.

Reported per variant:

* rollout tokens/s: reply tokens (through each row's first end-of-turn
  token) over the seconds spent inside ``generate``, timed by wrapping
  ``GenerationMixin.generate`` the same way for every variant; per
  CPU-second too (the ratio uses it);
* optimizer steps/s: steps over the wall-clock time of the whole run
  (model loading, sampling, scoring, reference and policy passes, updates);
  steps per CPU-second too (one torch thread, so the figure measures work
  rather than the load other users put on a shared machine).

Each variant runs in its own process; rounds are interleaved and the best
kept.

    .venv/bin/python benchmarks/bench_rl.py               # quick: 8 steps each
    .venv/bin/python benchmarks/bench_rl.py --steps 30 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("thresher-grpo", "thresher-ppo", "trl-grpo")
NAME, AUTHOR, NAME_EN, AUTHOR_EN = "小州", "神州数码", "Xiaozhou", "Digital China"
ROLLOUTS, GROUP, KL = 16, 4, 0.04


def make_prompts(path: Path, count: int) -> None:
    """Identity questions (with category) and general prompts, alternating, both languages."""
    from thresher.prompts.banks import eval_questions, general_prompts

    identity = [{"prompt": r["question"], "category": r["category"], "lang": r["lang"]} for r in eval_questions()]
    general = [{"prompt": r["prompt"], "category": "general", "lang": r["lang"]} for r in general_prompts()]
    rows = [row for pair in zip(identity, general) for row in pair][:count]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


class GenerateTimer:
    """Wraps ``GenerationMixin.generate``: seconds (wall and CPU) inside it and reply tokens through each row's
    first stop token."""

    def __init__(self, stops: list[int]) -> None:
        from transformers.generation.utils import GenerationMixin

        self.seconds, self.cpu_seconds, self.tokens, self.stops = 0.0, 0.0, 0, stops
        original = GenerationMixin.generate

        def timed(model, *args, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            output = original(model, *args, **kwargs)
            self.seconds += time.perf_counter() - start
            self.cpu_seconds += time.process_time() - cpu
            prompt = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
            for row in output[:, prompt.shape[1]:].tolist():
                ends = [i for i, token in enumerate(row) if token in self.stops]
                self.tokens += ends[0] + 1 if ends else len(row)
            return output

        GenerationMixin.generate = timed


def run_variant(variant: str, work: Path, steps: int, max_new_tokens: int) -> dict:
    """One variant's throughput (runs inside a fresh process; imports happen before the clock starts)."""
    import torch

    torch.set_num_threads(1)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    import matplotlib.pyplot  # noqa: F401 - thresher draws loss.png at the end
    from thresher.schemas import Identity
    from thresher.train.data import end_of_turn_ids
    from thresher.train.rl.config import GRPOConfig, PPOConfig
    from thresher.train.rl.rewards import identity_reward
    from thresher.train.rl.run import run_rl

    tokenizer = AutoTokenizer.from_pretrained(work / "model")
    timer = GenerateTimer(end_of_turn_ids(tokenizer))
    out = work / variant
    wall, cpu = time.perf_counter(), time.process_time()
    if variant.startswith("thresher"):
        common = dict(model=str(work / "model"), data=[str(work / "prompts.jsonl")], output=str(out), method="full",
                      lr=1e-5, max_steps=steps, rollouts_per_step=ROLLOUTS, batch_size=ROLLOUTS, grad_accum=1,
                      max_new_tokens=max_new_tokens, max_len=256, kl_coef=KL, reward=["identity"], name=NAME,
                      author=AUTHOR, name_en=NAME_EN, author_en=AUTHOR_EN, save_steps=10**9, seed=0,
                      scheduler="constant", warmup_ratio=0.0)
        config = GRPOConfig(num_generations=GROUP, **common) if variant == "thresher-grpo" else PPOConfig(
            ppo_epochs=1, **common)
        done = len(run_rl(config).log)
    else:
        me = Identity(name=NAME, author=AUTHOR, name_en=NAME_EN, author_en=AUTHOR_EN)

        def identity(prompts, completions, category, lang, **kwargs):
            return [identity_reward(c, completion[-1]["content"], me, lc)
                    for completion, c, lc in zip(completions, category, lang)]

        rows = load_dataset("json", data_files=str(work / "prompts.jsonl"), split="train")
        rows = rows.map(lambda r: {"prompt": [{"role": "user", "content": r["prompt"]}]})
        args = TRLConfig(output_dir=str(out), per_device_train_batch_size=ROLLOUTS, num_generations=GROUP,
                         max_completion_length=max_new_tokens, learning_rate=1e-5, beta=KL, max_steps=steps,
                         logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, bf16=False, seed=0,
                         disable_tqdm=True, lr_scheduler_type="constant")
        trainer = GRPOTrainer(model=str(work / "model"), reward_funcs=identity, args=args, train_dataset=rows,
                              processing_class=tokenizer)
        done = trainer.train().global_step
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"variant": variant, "steps": done, "rollout_tokens": timer.tokens,
            "rollout_tokens_per_s": timer.tokens / max(timer.seconds, 1e-9),
            "rollout_tokens_per_cpu_s": timer.tokens / max(timer.cpu_seconds, 1e-9),
            "steps_per_s": done / wall, "steps_per_cpu_s": done / cpu, "seconds": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per variant (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="reply length cap (default 32)")
    parser.add_argument("--prompts", type=int, default=64, help="prompts in the pool (default 64)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden size of the tiny model (default 128)")
    parser.add_argument("--layers", type=int, default=2, help="layers of the tiny model (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per variant, best kept (default 2)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one variant per process
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:
        print(json.dumps(run_variant(args.variant, Path(args.workdir), args.steps, args.max_new_tokens)))
        return 0

    import trl
    from rich.console import Console
    from rich.table import Table

    from thresher.train.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_prompts(work / "prompts.jsonl", args.prompts)
        build_tiny_model(work / "model", [work / "prompts.jsonl"], texts=[f"{NAME} {AUTHOR} {NAME_EN} {AUTHOR_EN}"],
                         vocab_size=1000, layers=args.layers, hidden=args.hidden)
        results: dict[str, dict] = {}
        for _ in range(args.rounds):  # interleaved rounds, best kept: the machine is shared and noisy
            for variant in VARIANTS:
                command = [sys.executable, __file__, "--variant", variant, "--workdir", tmp, "--steps",
                           str(args.steps), "--max-new-tokens", str(args.max_new_tokens)]
                done = subprocess.run(command, capture_output=True, text=True, env={**os.environ,
                                      "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
                if done.returncode != 0:
                    raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                if result["steps_per_cpu_s"] > results.get(variant, {}).get("steps_per_cpu_s", 0):
                    results[variant] = result
    peer = results["trl-grpo"]
    table = Table(title=f"online RL on CPU: tiny Llama (hidden {args.hidden}, {args.layers} layers), {ROLLOUTS} replies "
                        f"per step, <= {args.max_new_tokens} new tokens, identity reward, {args.steps} steps, "
                        f"best of {args.rounds}; TRL {trl.__version__}")
    for column in ("variant", "rollout tok/CPU-s", "vs TRL", "rollout tok/s (wall)", "steps/CPU-s", "vs TRL",
                   "steps/s (wall)", "reply tokens"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for variant, r in results.items():
        table.add_row(variant, f"{r['rollout_tokens_per_cpu_s']:.0f}",
                      f"{r['rollout_tokens_per_cpu_s'] / peer['rollout_tokens_per_cpu_s']:.2f}x",
                      f"{r['rollout_tokens_per_s']:.0f}", f"{r['steps_per_cpu_s']:.3f}",
                      f"{r['steps_per_cpu_s'] / peer['steps_per_cpu_s']:.2f}x", f"{r['steps_per_s']:.3f}",
                      str(r["rollout_tokens"]))
    Console(width=140).print(table)
    print(f"TRL {trl.__version__} has no PPOTrainer: thresher-ppo has no peer (its ratios are against TRL's GRPO).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
