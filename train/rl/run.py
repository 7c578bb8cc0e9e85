"""``thresher train ppo`` and ``thresher train grpo``: prompts, policy, rewards, then the one loop.

Both run through ``loop.train`` with a ``Rollouts`` source: each round is
sampled by the policy as it stands after the previous round's updates, so
checkpoints, exact ``--resume``, ``metrics.jsonl``, the plot (reward and KL
besides the loss) and ``accelerate``/``torchrun`` come as they do for SFT,
the reward model and DPO. The output folder is what SFT writes (model or
adapter, tokenizer, chat template, generation config), plus PPO's
``value_head.safetensors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thresher.curate.errors import ThresherError
from thresher.train.checkpoint import LoopState
from thresher.train.loop import Artifacts, Rollouts, start_run, train
from thresher.train.metrics import print_run_summary
from thresher.train.rl.config import GRPOConfig, PPOConfig, RLConfig


def check_shape(config: RLConfig, processes: int) -> None:
    """A round must cut into whole micro-batches, shared evenly by the processes."""
    if config.rollouts_per_step % config.batch_size:
        raise ThresherError(f"--rollouts-per-step {config.rollouts_per_step} is not a multiple of "
                            f"--batch-size {config.batch_size}")
    if (config.rollouts_per_step // config.batch_size) % processes:
        raise ThresherError(f"--rollouts-per-step {config.rollouts_per_step} / --batch-size {config.batch_size} "
                            f"micro-batches do not divide among {processes} processes")


def print_report(report: Any, budget: int, console: Any) -> None:
    from rich.table import Table

    table = Table(title="prompts")
    for column in ("records", "prompts", "prompt tokens", "removed"):
        table.add_column(column, justify="right")
    removed = ", ".join(f"{k} {v}" for k, v in sorted(report.removed.items())) or "0"
    table.add_row(str(report.records), str(report.prompts), str(report.tokens), removed)
    console.print(table)
    console.print(f"prompt budget {budget} tokens (--max-len minus --max-new-tokens)")


def run_rl(config: PPOConfig | GRPOConfig, console: Any = None) -> LoopState:
    """Train with PPO or GRPO (by the config's type); returns the loop's final state."""
    from rich.console import Console
    from thresher.train.inference import stop_ids
    from thresher.train.pairs import PairEncoder
    from thresher.train.rl.grpo import GRPO, GRPOObjective
    from thresher.train.rl.policy import RLModel, load_policy
    from thresher.train.rl.ppo import PPO, PPOObjective
    from thresher.train.rl.prompts import load_prompts
    from thresher.train.rl.rewards import build_rewards
    from thresher.train.rl.rollout import Collector
    from thresher.train.sft import check_method, load_tokenizer

    console = console or Console()
    check_method(config)
    out = Path(config.output)
    accelerator = start_run(config)
    check_shape(config, accelerator.num_processes)

    tokenizer, template_source, added = load_tokenizer(config)
    budget = config.max_len - config.max_new_tokens
    prompts, report = load_prompts(config.data, PairEncoder(tokenizer, budget, "chat", config.system), budget, out)
    if not prompts:
        raise ThresherError(f"no usable prompts in {', '.join(config.data)} (see {out / 'prompts.removed.jsonl'})")
    if accelerator.is_main_process:
        print_report(report, budget, console)
        console.print(f"chat template: {template_source}" + (f" (added {', '.join(added)})" if added else ""))
        config.save(out)

    policy, reference = load_policy(config, tokenizer, added, accelerator.device)
    rewards = build_rewards(config, accelerator.device)
    if isinstance(config, PPOConfig):
        algorithm: Any = PPO(config)
        objective: Any = PPOObjective(config)
    else:
        algorithm, objective = GRPO(config), GRPOObjective(config)
    model = RLModel(policy, algorithm.value_head)
    collector = Collector(prompts, rewards, tokenizer, stop_ids(policy, tokenizer), reference, algorithm, config,
                          accelerator)

    def save_extras(folder: Path) -> None:
        tokenizer.save_pretrained(folder)
        policy.generation_config.save_pretrained(folder)

    state = train(config, model, objective,
                  Rollouts(collector, collector.batches_per_round, config.ppo_epochs, collector.rounds_per_epoch),
                  (), accelerator, Artifacts(save_extras))
    if accelerator.is_main_process:
        saved = "model" if config.method == "full" else "adapter"
        print_run_summary(console, state.log, out, saved + (" and value head" if algorithm.value_head else ""))
    return state
