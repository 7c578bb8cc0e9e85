"""A model under evaluation, on this machine: its greedy answers, and how likely it finds given answers.

The evals ask two things of a model: answer these prompts (``answers``, batched
greedy generation) and score these (prompt, answer) pairs (``nll``: summed
negative log-likelihood of the answer's tokens and their count). The same two
questions are put to a served model by ``thresher.train.remote.ApiModel``,
so ``eval identity`` and ``eval general`` run the same rules on either.

An answer is scored exactly as SFT trains it: the pair is rendered with the
model's chat template and only the assistant's tokens count, through its
end-of-turn token (``tokenize_dialogue``), so "loss on the reference answers"
here and the training loss measure the same thing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Files whose content decides what a model answers (weights, config, tokenizer, template, adapter).
FINGERPRINT_SUFFIXES = (".json", ".jinja", ".safetensors", ".bin", ".model", ".txt")

Progress = Callable[[int], None] | None


def folder_fingerprint(*folders: str | Path | None) -> str:
    """A content hash of the model files in ``folders``: same hash, same greedy answers.

    A name that is not a folder (a hub id) hashes as its name.
    """
    digest = hashlib.blake2b(digest_size=10)
    for folder in folders:
        if folder is None:
            continue
        path = Path(folder)
        if not path.is_dir():
            digest.update(f"name:{folder}".encode())
            continue
        for file in sorted(p for p in path.iterdir() if p.is_file() and p.suffix in FINGERPRINT_SUFFIXES):
            digest.update(file.name.encode())
            with file.open("rb") as handle:
                while chunk := handle.read(1 << 22):
                    digest.update(chunk)
    return digest.hexdigest()


class LocalModel:
    """A model folder (or adapter + base) loaded on first use; ``release`` frees it."""

    def __init__(self, path: str, adapter: str | None = None, batch_size: int = 16, score_batch_size: int = 8) -> None:
        self.path, self.adapter = path, adapter
        self.batch_size, self.score_batch_size = batch_size, score_batch_size
        self._loaded: tuple[Any, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.path} + {self.adapter}" if self.adapter else str(self.path)

    def fingerprint(self) -> str:
        return folder_fingerprint(self.path, self.adapter)

    def loaded(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded once."""
        if self._loaded is None:
            from thresher.train.inference import load_trained

            self._loaded = load_trained(self.path, self.adapter)
        return self._loaded

    def release(self) -> None:
        self._loaded = None

    def answers(self, prompts: Sequence[str], max_new_tokens: int, progress: Progress = None) -> list[tuple[str, bool]]:
        """(answer, stopped at end of turn) for every prompt, greedy."""
        from thresher.train.generate import generate_batch

        model, tokenizer = self.loaded()
        conversations = [[{"role": "user", "content": prompt}] for prompt in prompts]
        results = generate_batch(model, tokenizer, conversations, max_new_tokens, self.batch_size, progress=progress)
        return [(result.text, result.stopped) for result in results]

    def nll(self, pairs: Sequence[tuple[str, str]], progress: Progress = None) -> list[tuple[float, int]]:
        """(summed NLL of the answer's tokens, their count) for every (prompt, answer).

        Every answer is scored, an empty one too (its end-of-turn token): built
        with ``model_construct``, since scoring what a model said is no place
        for the training data contract, which rejects blank answers.
        """
        import torch

        from thresher.train.collate import pad_batch
        from thresher.train.data import IGNORE, tokenize_dialogue
        from thresher.train.dpo import reply_logps
        from thresher.schemas import Dialogue, Message

        model, tokenizer = self.loaded()
        examples = []
        for prompt, answer in pairs:
            turns = [Message.model_construct(role="user", content=prompt), Message.model_construct(role="assistant", content=answer)]
            examples.append(tokenize_dialogue(tokenizer, Dialogue.model_construct(messages=turns), max_len=1 << 30))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
        scores: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
        device = next(model.parameters()).device
        for start in range(0, len(order), self.score_batch_size):
            batch = order[start:start + self.score_batch_size]
            tensors = {k: v.to(device) for k, v in pad_batch([examples[i] for i in batch], pad_id).items()}
            with torch.inference_mode():
                logps = reply_logps(model, tensors)
            counts = (tensors["labels"][:, 1:] != IGNORE).sum(-1)
            for row, index in enumerate(batch):
                scores[index] = (-float(logps[row]), int(counts[row]))
            if progress is not None:
                progress(len(batch))
        return scores
