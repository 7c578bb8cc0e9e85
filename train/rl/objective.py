"""What the PPO and GRPO losses share: reply tokens as the unit, one forward pass, the clipped policy term.

For each reply token, with ``ratio = exp(logp - logp_old)`` and the token's advantage ``A``:

    policy = max(-A * ratio, -A * clip(ratio, 1 - clip, 1 + clip))

the pessimistic (larger) of the plain and the clipped policy-gradient loss,
so a step gains nothing by moving a token's probability more than ``clip``
away from where the round sampled it. ``clip_fraction`` counts the tokens
where the clipped term is the larger one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from thresher.train.rl.rollout import token_stats


@dataclass
class PolicyTerm:
    """One micro-batch's forward pass and clipped policy loss, per reply token."""

    mask: torch.Tensor  # reply tokens (float)
    logps: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor | None  # PPO: the value head at each reply token's state
    log_ratio: torch.Tensor
    policy: torch.Tensor
    clipped: torch.Tensor  # where the clipped term is the larger

    def summed(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` summed over reply tokens, detached: a metric the loop averages per token."""
        return (x.detach().float() * self.mask).sum()


class ClippedObjective:
    """The part of ``loop.Objective`` PPO and GRPO share; unit: reply tokens."""

    unit = "tokens"

    def __init__(self, config: Any) -> None:
        self.config = config

    def count(self, batch: dict[str, Any]) -> int:
        return int(batch["reply_mask"].sum())

    def policy_term(self, model: Any, batch: dict[str, Any]) -> PolicyTerm:
        mask = batch["reply_mask"].float()
        logits, values = model(batch, mask.size(1) + 1)
        logps, entropy = token_stats(logits, batch, self.config.temperature, entropy=True)
        log_ratio = logps - batch["old_logps"]
        ratio = log_ratio.exp()
        advantages = batch["advantages"]
        if advantages.dim() == 1:  # GRPO: one advantage per reply, shared by its tokens
            advantages = advantages.unsqueeze(1)
        unclipped = -advantages * ratio
        clipped = -advantages * ratio.clamp(1 - self.config.clip, 1 + self.config.clip)
        return PolicyTerm(mask, logps, entropy, None if values is None else values[:, :-1], log_ratio,
                          torch.maximum(unclipped, clipped), clipped > unclipped)

    def metrics(self, term: PolicyTerm) -> dict[str, torch.Tensor]:
        return {"policy_loss": term.summed(term.policy), "entropy": term.summed(term.entropy),
                "clip_fraction": term.summed(term.clipped.float())}

    def finalize(self, means: dict[str, float]) -> dict[str, float]:
        return means
