"""Rollouts: sample replies with the current policy, score them, and keep what the update needs.

A round (``Collector.__call__``) takes the next ``prompts_per_round``
prompts (a seeded shuffle per pass over the prompts), repeats each
``rows_per_prompt`` times (GRPO's group; 1 for PPO) and cuts the rows into
micro-batches of ``--batch-size``; process ``i`` of ``n`` samples
micro-batches ``i, i+n, ...``. Per micro-batch:

1. ``sample``: one batched ``generate`` over the prompts, left-padded as every
   eval pads them (``generate.left_padded``), with the KV cache, plain sampling
   at ``--temperature`` (no top-k/top-p, so the sampling distribution is the
   one the log-probabilities are taken from), stopped per row at the first
   end-of-turn/EOS token or ``--max-new-tokens``. Each micro-batch is sampled
   under its own seed (seed, round, position), so two processes sample exactly
   what one process samples; the replies come back as tensors ready for the update.
2. rewards on the decoded replies (the stop token is not part of the text);
3. one forward of the policy (eval mode: no dropout) for the log-probs the
   update's ratio starts from (and PPO's values), and one of the reference.

A micro-batch is one tensor dict: ``input_ids`` (prompt left-padded, reply
right-padded), ``attention_mask``, ``reply_mask`` (reply tokens, the stop
token included), per reply token ``old_logps`` and ``ref_logps`` (and
``values``), per row ``scores``. The algorithm then adds its advantages
(``Algorithm.advantages``), with statistics over every process's rows.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from thresher.train.generate import left_padded
from thresher.train.reference import reference_mode
from thresher.train.rl.policy import RLModel, lm_logits
from thresher.train.rl.prompts import Prompt
from thresher.train.rl.rewards import Rewards


class Algorithm(Protocol):
    """What PPO and GRPO add to the shared rollouts."""

    value_head: bool
    rows_per_prompt: int

    def advantages(self, local: dict[int, dict[str, torch.Tensor]], rows: int, accelerator: Any) -> dict[str, float]:
        """Write ``advantages`` (and what else the loss needs) into the local micro-batches; return round metrics."""
        ...


@torch.no_grad()
def sample(policy: Any, prompts: Sequence[list[int]], stops: list[int], pad_id: int, max_new_tokens: int,
           temperature: float, seed: int) -> dict[str, torch.Tensor]:
    """Sample one reply per prompt; returns ``input_ids``, ``attention_mask`` and ``reply_mask``."""
    from transformers import GenerationConfig

    device = policy.get_input_embeddings().weight.device
    ids, mask = (tensor.to(device) for tensor in left_padded(prompts, pad_id))
    settings = GenerationConfig(do_sample=True, temperature=temperature, top_k=0, top_p=1.0, use_cache=True,
                                max_new_tokens=max_new_tokens, eos_token_id=stops, pad_token_id=pad_id)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        output = policy.generate(input_ids=ids, attention_mask=mask, generation_config=settings)
    replies = output[:, ids.size(1):]
    is_stop = torch.isin(replies, torch.tensor(stops, device=replies.device))
    steps = torch.arange(replies.size(1), device=replies.device)
    first_stop = torch.where(is_stop.any(1), is_stop.int().argmax(1), replies.size(1))
    reply_mask = (steps.unsqueeze(0) <= first_stop.unsqueeze(1)).long()
    width = int(reply_mask.sum(1).max())
    reply_mask = reply_mask[:, :width]
    replies = replies[:, :width].masked_fill(reply_mask == 0, pad_id)
    return {"input_ids": torch.cat([ids, replies], 1), "attention_mask": torch.cat([mask, reply_mask], 1),
            "reply_mask": reply_mask}


def token_stats(logits: torch.Tensor, batch: dict[str, torch.Tensor], temperature: float,
                entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probability of each reply token (and the policy's entropy there) from the logits kept for the reply.

    ``logits`` holds the last ``reply width + 1`` positions; the one before
    each reply token predicts it.
    """
    width = batch["reply_mask"].size(1)
    logprobs = (logits[:, :-1].float() / temperature).log_softmax(-1)
    tokens = batch["input_ids"][:, -width:]
    logps = logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return logps, (-(logprobs.exp() * logprobs).sum(-1) if entropy else None)


def global_rows(local: dict[int, torch.Tensor], batch_size: int, rows: int, accelerator: Any) -> torch.Tensor:
    """Per-row values of every process's micro-batches in one tensor, in round order (rows x ...)."""
    first = next(iter(local.values()))
    total = torch.zeros((rows, *first.shape[1:]), dtype=torch.float32, device=first.device)
    for position, values in local.items():
        total[position * batch_size: position * batch_size + len(values)] = values.float()
    return accelerator.reduce(total, reduction="sum") if accelerator.num_processes > 1 else total


class Collector:
    """``Rollouts.collect`` for PPO and GRPO: one round of sampled, scored micro-batches."""

    def __init__(self, prompts: list[Prompt], rewards: Rewards, tokenizer: Any, stops: list[int], reference: Any,
                 algorithm: Algorithm, config: Any, accelerator: Any) -> None:
        self.prompts, self.rewards, self.tokenizer, self.stops = prompts, rewards, tokenizer, stops
        self.reference, self.algorithm, self.config, self.accelerator = reference, algorithm, config, accelerator
        self.prompts_per_round = config.rollouts_per_step // algorithm.rows_per_prompt
        self.batches_per_round = config.rollouts_per_step // config.batch_size
        self.rounds_per_epoch = math.ceil(len(prompts) / self.prompts_per_round)
        self._orders: dict[int, list[int]] = {}

    def order(self, epoch: int) -> list[int]:
        """The prompts of one pass, shuffled by (seed, pass)."""
        if epoch not in self._orders:
            order = list(range(len(self.prompts)))
            random.Random(self.config.seed + epoch).shuffle(order)
            self._orders = {epoch: order, **{k: v for k, v in self._orders.items() if k == epoch - 1}}
        return self._orders[epoch]

    def round_rows(self, round_index: int) -> list[int]:
        """Prompt index of every row of the round (each prompt ``rows_per_prompt`` times in a row)."""
        start = round_index * self.prompts_per_round
        picked = [self.order(p // len(self.prompts))[p % len(self.prompts)]
                  for p in range(start, start + self.prompts_per_round)]
        return [index for index in picked for _ in range(self.algorithm.rows_per_prompt)]

    def seed(self, round_index: int, position: int) -> int:
        return (self.config.seed * 1_000_003 + round_index * 10_007 + position) % (1 << 63)

    def __call__(self, model: RLModel, round_index: int) -> tuple[dict[int, dict[str, torch.Tensor]], dict[str, float]]:
        config, accelerator = self.config, self.accelerator
        rows = self.round_rows(round_index)
        size = config.batch_size
        local: dict[int, dict[str, torch.Tensor]] = {}
        parts: dict[int, torch.Tensor] = {}
        generated, seconds = 0, 0.0
        was_training = model.training
        model.eval()
        for position in range(accelerator.process_index, self.batches_per_round, accelerator.num_processes):
            items = [self.prompts[i] for i in rows[position * size: (position + 1) * size]]
            start = time.perf_counter()
            batch = sample(model.policy, [p.ids for p in items], self.stops, self.tokenizer.pad_token_id,
                           config.max_new_tokens, config.temperature, self.seed(round_index, position))
            seconds += time.perf_counter() - start
            lengths = batch["reply_mask"].sum(1)
            generated += int(lengths.sum())
            tokens = batch["input_ids"][:, -batch["reply_mask"].size(1):]
            stopped = torch.isin(tokens.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1),
                                 torch.tensor(self.stops, device=tokens.device))
            texts = [self.tokenizer.decode(row[: int(n) - int(s)].tolist(), skip_special_tokens=True)
                     for row, n, s in zip(tokens, lengths, stopped)]
            totals, scores = self.rewards(items, texts)
            batch["scores"] = torch.tensor(totals, dtype=torch.float32, device=tokens.device)
            keep = batch["reply_mask"].size(1) + 1
            with torch.no_grad():
                logits, values = model(batch, keep)
                batch["old_logps"] = token_stats(logits, batch, config.temperature)[0]
                if values is not None:
                    batch["values"] = values[:, :-1] * batch["reply_mask"]
                with reference_mode(model.policy, self.reference) as reference:
                    batch["ref_logps"] = token_stats(lm_logits(reference, batch, keep), batch, config.temperature)[0]
            local[position] = batch
            parts[position] = torch.stack([lengths.float(), stopped.float(), batch["scores"],
                                           *(torch.tensor(s, device=tokens.device) for s in scores)], 1)
        model.train(was_training)
        per_row = global_rows(parts, size, len(rows), accelerator)
        rate = torch.tensor(generated / max(seconds, 1e-9), device=accelerator.device)
        if accelerator.num_processes > 1:
            rate = accelerator.reduce(rate, reduction="sum")
        metrics = {
            "reward": float(per_row[:, 2].mean()),
            "reward_std": float(per_row[:, 2].std()) if len(rows) > 1 else 0.0,
            **{f"reward/{name}": float(per_row[:, 3 + i].mean()) for i, name in enumerate(self.rewards.names)
               if len(self.rewards.names) > 1},
            "reply_length": float(per_row[:, 0].mean()),
            "stopped": float(per_row[:, 1].mean()),
            "rollout_tokens_per_s": float(rate),
        }
        metrics.update(self.algorithm.advantages(local, len(rows), accelerator))
        return local, metrics
