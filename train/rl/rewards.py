"""Rewards for RL: a reward model, the identity rules, or a weighted sum of several.

``rm:PATH`` (and PPO's ``--reward-model PATH``) scores each (prompt, reply)
with a ``thresher train rm`` model through ``RewardScorer``, in the model's
own input layout (``reward_model.json``): the reply is passed as text, so
the reward model may use a different tokenizer than the policy.

``identity`` scores each reply with ``check_answer``, the rules synthesis
uses to accept training answers and ``thresher eval identity`` uses to score
a model, against the prompt's category and language (see ``prompts.py``):

* a reply that passes every rule scores 1;
* each broken rule costs 0.5 (missing name, missing author, no denial of a
  competitor, wrong language, a competitor claim, a placeholder), down to -1;
* a blank reply, and a general prompt answered with the model's own name or
  author (parroting), score -1 outright.

The graded middle matters for GRPO: a group whose replies all fail still
learns which ones failed less.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from thresher.curate.text.identity import check_answer
from thresher.schemas import Identity
from thresher.train.rl.config import RM_PREFIX, RLConfig
from thresher.train.rl.prompts import Prompt

#: Reasons that score -1 whatever else holds.
WORST = frozenset({"blank", "names_itself"})


class Reward(Protocol):
    """Scores replies to prompts; ``name`` labels its metric (``reward/<name>``)."""

    name: str

    def __call__(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]: ...


def identity_reward(category: str, reply: str, identity: Identity, lang: str) -> float:
    """The identity rule reward of one reply (see the module docstring)."""
    result = check_answer(category, reply.strip(), identity, lang)
    if result.passed:
        return 1.0
    if WORST & set(result.reasons):
        return -1.0
    return max(-1.0, 1.0 - 0.5 * len(result.reasons))


class IdentityReward:
    name = "identity"

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    def __call__(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        return [identity_reward(p.category, reply, self.identity, p.lang) for p, reply in zip(prompts, replies)]


class ModelReward:
    """A ``thresher train rm`` model's score."""

    def __init__(self, path: str, device: Any) -> None:
        from thresher.train.rm import RewardScorer

        self.name = f"rm:{Path(path).name}"
        self.scorer = RewardScorer(path, str(device))

    def __call__(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        return self.scorer.score([(p.messages, reply) for p, reply in zip(prompts, replies)])


class Rewards:
    """The weighted sum of several rewards, with each one's own scores for the metrics."""

    def __init__(self, functions: Sequence[Reward], weights: Sequence[float]) -> None:
        self.functions = list(functions)
        self.weights = list(weights)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.functions]

    def __call__(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> tuple[list[float], list[list[float]]]:
        """(total per reply, each function's scores per reply)."""
        parts = [function(prompts, replies) for function in self.functions]
        totals = [sum(w * scores[i] for w, scores in zip(self.weights, parts)) for i in range(len(replies))]
        return totals, parts


def build_rewards(config: RLConfig, device: Any) -> Rewards:
    """The rewards ``config`` names, loaded (reward models on ``device``)."""
    functions: list[Reward] = []
    for spec in config.reward_specs():
        if spec == "identity":
            functions.append(IdentityReward(Identity(name=config.name, author=config.author,
                                                     name_en=config.name_en, author_en=config.author_en)))
        else:
            functions.append(ModelReward(spec[len(RM_PREFIX):], device))
    return Rewards(functions, config.weights())
