"""Settings and flags of ``thresher train ppo`` and ``thresher train grpo`` (no torch here: ``--help`` stays light).

Words as the commands use them: a *round* samples ``--rollouts-per-step``
replies with the current policy and scores them; the round is then trained
``--ppo-epochs`` times, in micro-batches of ``--batch-size`` replies and
optimizer steps of ``--grad-accum`` micro-batches (per process). ``--max-steps``
counts optimizer steps, as for every trainer; ``--epochs`` counts passes
over the prompts.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from thresher.train.config import TrainConfig, add_training_flags

#: Rule rewards by name; ``rm:PATH`` names a reward model.
RULE_REWARDS = ("identity",)
RM_PREFIX = "rm:"


class RLConfig(TrainConfig):
    """What PPO and GRPO share: the round, the rewards, the identity the rule reward checks."""

    epochs: float = Field(1.0, gt=0, description="passes over the prompts")
    grad_accum: int = Field(4, gt=0, description="micro-batches per optimizer step")
    reward: list[str] = Field(default_factory=list, description="reward functions: identity, rm:PATH")
    reward_weights: list[float] | None = Field(None, description="one weight per reward (default 1 each)")
    rollouts_per_step: int = Field(16, gt=0, description="replies sampled per round (all processes)")
    ppo_epochs: int = Field(1, gt=0, description="optimisation passes over each round")
    clip: float = Field(0.2, gt=0, lt=1, description="clip range of the probability ratio")
    kl_coef: float = Field(0.05, ge=0, description="weight of the KL to the reference")
    max_new_tokens: int = Field(128, gt=0, description="reply length cap in tokens")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    name: str | None = Field(None, description="identity: the model's name")
    author: str | None = Field(None, description="identity: who made it")
    name_en: str | None = Field(None, description="identity: English name")
    author_en: str | None = Field(None, description="identity: English author")

    @model_validator(mode="before")
    @classmethod
    def _rl_learning_rate(cls, data: Any) -> Any:
        """RL moves a trained model a little: lower defaults than SFT's (1e-5 LoRA, 1e-6 full)."""
        if isinstance(data, dict) and data.get("lr") is None:
            data = {**data, "lr": 1e-6 if data.get("method") == "full" else 1e-5}
        return data

    @model_validator(mode="after")
    def _check_rl(self) -> RLConfig:
        if self.eval_data or self.val_size or self.packing:
            raise ValueError("eval data, --val-size and --packing do not apply to RL (evaluate with thresher eval)")
        specs = self.reward_specs()
        if not specs:
            raise ValueError("give at least one reward (--reward identity, --reward rm:PATH)")
        for spec in specs:
            if spec not in RULE_REWARDS and not (spec.startswith(RM_PREFIX) and len(spec) > len(RM_PREFIX)):
                raise ValueError(f"unknown reward {spec!r}: use {', '.join(RULE_REWARDS)} or rm:PATH")
        if self.reward_weights is not None and len(self.reward_weights) != len(specs):
            raise ValueError(f"{len(self.reward_weights)} reward weights for {len(specs)} rewards ({', '.join(specs)})")
        if "identity" in specs and not (self.name and self.author):
            raise ValueError("--reward identity needs --name and --author (and --name-en/--author-en if they differ)")
        if self.max_new_tokens >= self.max_len:
            raise ValueError(f"--max-new-tokens {self.max_new_tokens} leaves no room for a prompt in --max-len {self.max_len}")
        return self

    def reward_specs(self) -> list[str]:
        """Every reward, in the order ``reward_weights`` follows."""
        return list(self.reward)

    def resolve_models(self) -> RLConfig:
        """The policy and every reward model, checked before anything is loaded."""
        from thresher.train.model_path import resolve_model

        super().resolve_models()
        self.reward = [RM_PREFIX + resolve_model(spec[len(RM_PREFIX):]) if spec.startswith(RM_PREFIX) else spec
                       for spec in self.reward]
        return self

    def weights(self) -> list[float]:
        return list(self.reward_weights) if self.reward_weights is not None else [1.0] * len(self.reward_specs())


class PPOConfig(RLConfig):
    """PPO: a value head, GAE, clipped policy and value losses, the KL penalty in the reward."""

    command: ClassVar[str] = "ppo"
    reward_model: str | None = Field(None, description="reward model folder (thresher train rm)")
    ppo_epochs: int = Field(4, gt=0, description="optimisation passes over each round")
    vf_coef: float = Field(0.1, ge=0, description="weight of the value loss")
    value_clip: float = Field(0.2, gt=0, description="clip range of the value update")
    gamma: float = Field(1.0, gt=0, le=1, description="discount")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    whiten_rewards: bool = Field(True, description="scale per-token rewards to unit variance before GAE")

    def reward_specs(self) -> list[str]:
        return ([f"{RM_PREFIX}{self.reward_model}"] if self.reward_model else []) + list(self.reward)

    def resolve_models(self) -> PPOConfig:
        from thresher.train.model_path import resolve_model

        super().resolve_models()
        if self.reward_model:
            self.reward_model = resolve_model(self.reward_model)
        return self


class GRPOConfig(RLConfig):
    """GRPO: G replies per prompt, advantages relative to the group, no value head."""

    command: ClassVar[str] = "grpo"
    num_generations: int = Field(4, ge=2, description="replies per prompt (the group)")
    kl_coef: float = Field(0.04, ge=0, description="weight of the KL to the reference (beta)")
    scale_rewards: Literal["group", "none"] = Field("group", description="divide advantages by the group's std")

    @model_validator(mode="after")
    def _groups_fit(self) -> GRPOConfig:
        if self.rollouts_per_step % self.num_generations:
            raise ValueError(f"--rollouts-per-step {self.rollouts_per_step} is not a multiple of "
                             f"--num-generations {self.num_generations}")
        return self


# ---------------------------------------------------------------- flags

RL_HELPS = {
    "model": "the model to improve: an SFT output (full model, or LoRA adapter whose base is read from it)",
    "method": "lora (default; continues an adapter --model, else a new one), full or qlora (CUDA only)",
    "epochs": "passes over the prompts (default 1)",
    "lr": "peak learning rate (default 1e-5 LoRA, 1e-6 full)",
    "batch_size": "replies per device per micro-batch, for sampling and training (default 4)",
    "grad_accum": "micro-batches per optimizer step (default 4)",
    "max_len": "max tokens of prompt + reply; longer prompts are removed (default 2048)",
}
RL_OMIT = ("eval_data", "val_size", "packing", "eval_steps")


def add_rl_flags(parser: argparse.ArgumentParser, ppo: bool) -> None:
    """Every flag of ``train ppo`` (``ppo=True``) or ``train grpo``."""
    S = argparse.SUPPRESS
    add_training_flags(parser, data_flag="--prompts", omit=RL_OMIT, helps={
        **RL_HELPS, "data": "record files whose prompts are sampled: the prompt side of any record thresher "
                            "reads, or prompt-only rows (prompt, question or instruction)"})
    rl = parser.add_argument_group("rollouts and rewards")
    if ppo:
        rl.add_argument("--reward-model", default=S, metavar="RM_OUT",
                        help="reward model folder written by thresher train rm (scores each reply)")
    rl.add_argument("--reward", nargs="+", default=S, metavar="SPEC",
                    help="reward functions, summed with --reward-weights: identity (the identity rules of "
                         "synthesis and eval; parroting on general prompts penalised) or rm:PATH (a reward model)")
    rl.add_argument("--reward-weights", nargs="+", type=float, default=S, metavar="W",
                    help="one weight per reward, in order" + (" (--reward-model first)" if ppo else "") + " (default 1 each)")
    rl.add_argument("--rollouts-per-step", type=int, default=S, metavar="N",
                    help="replies sampled per round, all processes together (default 16)")
    rl.add_argument("--ppo-epochs", type=int, default=S, metavar="K",
                    help=f"optimisation passes over each round's replies (default {4 if ppo else 1})")
    rl.add_argument("--clip", type=float, default=S, help="clip range of the probability ratio (default 0.2)")
    rl.add_argument("--kl-coef", type=float, default=S,
                    help=f"weight of the per-token KL to the reference (default {0.05 if ppo else 0.04})")
    rl.add_argument("--max-new-tokens", type=int, default=S, help="reply length cap in tokens (default 128)")
    rl.add_argument("--temperature", type=float, default=S, help="sampling temperature (default 1.0)")
    if ppo:
        rl.add_argument("--vf-coef", type=float, default=S, help="weight of the value loss (default 0.1)")
        rl.add_argument("--value-clip", type=float, default=S, help="clip range of the value update (default 0.2)")
        rl.add_argument("--gamma", type=float, default=S, help="discount (default 1.0)")
        rl.add_argument("--lam", type=float, default=S, help="GAE lambda (default 0.95)")
        rl.add_argument("--whiten-rewards", action=argparse.BooleanOptionalAction, default=S,
                        help="scale per-token rewards to unit variance before GAE (default on)")
    else:
        rl.add_argument("--num-generations", type=int, default=S, metavar="G",
                        help="replies per prompt, the group advantages are relative to (default 4)")
        rl.add_argument("--scale-rewards", choices=("group", "none"), default=S,
                        help="divide advantages by the group's standard deviation (default group)")
    who = parser.add_argument_group("identity (for --reward identity)")
    who.add_argument("--name", default=S, help="the model's name, e.g. 小州")
    who.add_argument("--author", default=S, help="who made it, e.g. 神州数码")
    who.add_argument("--name-en", default=S, help="English name, if different")
    who.add_argument("--author-en", default=S, help="English author, if different")
