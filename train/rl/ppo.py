"""PPO for language models, as the source material's full training process describes it, done properly.

Per round (``PPO.advantages``), for each reply token ``t``:

* reward ``r_t = -kl_coef * (logp_old_t - logp_ref_t)``, plus the reply's
  score on its last token (the KL penalty keeps the policy near the SFT
  model token by token, the score says how good the whole reply was);
* with ``--whiten-rewards`` (default) the per-token rewards are divided by
  their standard deviation over the round (mean kept), so reward models of
  any scale give steps of the same size;
* GAE: ``delta_t = r_t + gamma * V_{t+1} - V_t``, ``A_t = delta_t + gamma *
  lam * A_{t+1}`` (``V`` is 0 past the reply's end), returns ``A_t + V_t``;
  advantages are then whitened (mean 0, std 1) over the round.

Statistics over "the round" are over every process's tokens, so two
processes train exactly as one.

The loss of a token (``PPOObjective``), summed over reply tokens and divided
by the window's reply tokens by the loop:

    policy:  max(-A * ratio, -A * clip(ratio, 1 - clip, 1 + clip)),  ratio = exp(logp - logp_old)
    value:   0.5 * max((V - R)^2, (V_old + clip(V - V_old, ±value_clip) - R)^2)
    loss:    policy + vf_coef * value

Metrics: ``reward``/``reward_std`` (scores), ``kl`` (mean per-token
``logp_old - logp_ref`` of the round: 0 at step 1), ``entropy``,
``clip_fraction``, ``value_loss``, ``value_clip_fraction``, ``approx_kl``
(old to current policy), ``reply_length``, tokens/s.
"""

from __future__ import annotations

from typing import Any

import torch

from thresher.train.rl.config import PPOConfig
from thresher.train.rl.objective import ClippedObjective


def masked_moments(pairs: list[tuple[torch.Tensor, torch.Tensor]], accelerator: Any) -> tuple[float, float]:
    """Mean and (unbiased) variance of the masked values of every process's micro-batches."""
    device = pairs[0][0].device
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for values, mask in pairs:
        values, mask = values.double(), mask.double()
        sums += torch.stack([mask.sum(), (values * mask).sum(), (values**2 * mask).sum()])
    if accelerator.num_processes > 1:
        sums = accelerator.reduce(sums, reduction="sum")
    count, total, squares = (float(v) for v in sums)
    mean = total / count
    return mean, max(squares - count * mean**2, 0.0) / max(count - 1, 1)


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) by generalised advantage estimation; rewards and values are 0 past each reply."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    width = rewards.size(1)
    for t in reversed(range(width)):
        following = values[:, t + 1] if t + 1 < width else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * following - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages, advantages + values


class PPO:
    """PPO's part of a round: per-token rewards, GAE, whitening."""

    value_head = True
    rows_per_prompt = 1

    def __init__(self, config: PPOConfig) -> None:
        self.config = config

    def advantages(self, local: dict[int, dict[str, torch.Tensor]], rows: int, accelerator: Any) -> dict[str, float]:
        config = self.config
        batches = list(local.values())
        masks = [b["reply_mask"].float() for b in batches]
        kls = [(b["old_logps"] - b["ref_logps"]) * m for b, m in zip(batches, masks)]
        kl_mean, _ = masked_moments(list(zip(kls, masks)), accelerator)
        rewards = []
        for batch, mask, kl in zip(batches, masks, kls):
            reward = -config.kl_coef * kl
            last = mask.sum(1).long() - 1
            reward[torch.arange(len(last), device=last.device), last] += batch["scores"]
            rewards.append(reward)
        if config.whiten_rewards:
            _, variance = masked_moments(list(zip(rewards, masks)), accelerator)
            rewards = [r / (variance + 1e-8) ** 0.5 for r in rewards]
        advantages = []
        for batch, mask, reward in zip(batches, masks, rewards):
            advantage, returns = gae(reward * mask, batch["values"] * mask, config.gamma, config.lam)
            batch["returns"] = returns * mask
            advantages.append(advantage)
        mean, variance = masked_moments(list(zip(advantages, masks)), accelerator)
        for batch, mask, advantage in zip(batches, masks, advantages):
            batch["advantages"] = (advantage - mean) / (variance + 1e-8) ** 0.5 * mask
        return {"kl": kl_mean, "non_score_reward": -config.kl_coef * kl_mean}


class PPOObjective(ClippedObjective):
    """The clipped policy loss plus the clipped value loss."""

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        config = self.config
        term = self.policy_term(model, batch)
        values, old_values, returns = term.values, batch["values"], batch["returns"]
        moved = old_values + (values - old_values).clamp(-config.value_clip, config.value_clip)
        value = 0.5 * torch.maximum((values - returns) ** 2, (moved - returns) ** 2)
        loss = ((term.policy + config.vf_coef * value) * term.mask).sum()
        return loss, {
            **self.metrics(term),
            "value_loss": term.summed(value),
            "value_clip_fraction": term.summed(((moved - returns) ** 2 > (values - returns) ** 2).float()),
            "approx_kl": term.summed(0.5 * term.log_ratio**2),
        }
