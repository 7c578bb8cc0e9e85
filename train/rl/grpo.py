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
from thresher.train.rl.objective import ClippedObjective
from thresher.train.rl.rollout import global_rows


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


class GRPOObjective(ClippedObjective):
    """The clipped policy loss plus the k3 KL to the reference."""

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        term = self.policy_term(model, batch)
        to_reference = batch["ref_logps"] - term.logps
        kl = to_reference.exp() - to_reference - 1
        loss = ((term.policy + self.config.kl_coef * kl) * term.mask).sum()
        return loss, {**self.metrics(term), "kl": term.summed(kl)}
