"""GRPO (Shao et al. 2024): G replies per prompt, advantages relative to the group, no value head.

Per round (``GRPO.advantages``) each reply's advantage is its score minus
the mean score of its group (the G replies to the same prompt), divided by
the group's standard deviation (``--scale-rewards group``, the default;
``none`` keeps the raw difference, as Dr. GRPO argues). Every token of a
reply shares the reply's advantage. A group whose replies all score the same
teaches nothing; ``groups_without_signal`` counts them.

The loss of a token (``GRPOObjective``), summed over reply tokens and
divided by the window's reply tokens by the loop (token-level averaging, as
DAPO and TRL's default do):

    max(-A * ratio, -A * clip(ratio, 1 - clip, 1 + clip)) + kl_coef * KL
    KL = exp(logp_ref - logp) - (logp_ref - logp) - 1

(the k3 estimator: non-negative, unbiased; 0 while the policy is the
reference, so at step 1). With ``--ppo-epochs 1`` (the default) ratio is 1
and the update is the plain policy gradient with the group baseline.
"""

from __future__ import annotations

from typing import Any

import torch

from thresher.train.rl.config import GRPOConfig
from thresher.train.rl.rollout import global_rows, token_stats


class GRPO:
    """GRPO's part of a round: group-relative advantages."""

    value_head = False

    def __init__(self, config: GRPOConfig) -> None:
        self.config = config
        self.rows_per_prompt = config.num_generations

    def advantages(self, local: dict[int, dict[str, torch.Tensor]], rows: int, accelerator: Any) -> dict[str, float]:
        scores = global_rows({p: b["scores"] for p, b in local.items()}, self.config.batch_size, rows, accelerator)
        groups = scores.view(-1, self.config.num_generations)
        spread = groups.std(1, keepdim=True)
        advantages = groups - groups.mean(1, keepdim=True)
        if self.config.scale_rewards == "group":
            advantages = advantages / (spread + 1e-4)
        advantages = advantages.flatten()
        size = self.config.batch_size
        for position, batch in local.items():
            batch["advantages"] = advantages[position * size: position * size + len(batch["scores"])]
        return {"groups_without_signal": float((spread < 1e-6).float().mean())}


class GRPOObjective:
    """The clipped policy-gradient loss with a KL penalty to the reference; unit: reply tokens."""

    unit = "tokens"

    def __init__(self, config: GRPOConfig) -> None:
        self.config = config

    def count(self, batch: dict[str, Any]) -> int:
        return int(batch["reply_mask"].sum())

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        config = self.config
        mask = batch["reply_mask"].float()
        logits, _ = model(batch, mask.size(1) + 1)
        logps, entropy = token_stats(logits, batch, config.temperature, entropy=True)
        ratio = (logps - batch["old_logps"]).exp()
        advantages = batch["advantages"].unsqueeze(1)
        unclipped = -advantages * ratio
        clipped = -advantages * ratio.clamp(1 - config.clip, 1 + config.clip)
        policy = torch.maximum(unclipped, clipped)
        to_reference = batch["ref_logps"] - logps
        kl = to_reference.exp() - to_reference - 1
        loss = ((policy + config.kl_coef * kl) * mask).sum()

        def summed(x: torch.Tensor) -> torch.Tensor:
            return (x.detach().float() * mask).sum()

        return loss, {
            "policy_loss": summed(policy),
            "kl": summed(kl),
            "entropy": summed(entropy),
            "clip_fraction": summed((clipped > unclipped).float()),
        }

    def finalize(self, means: dict[str, float]) -> dict[str, float]:
        return means
