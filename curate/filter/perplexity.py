"""Perplexity of record text under any causal language model from ``transformers``.

High perplexity marks text the reference model finds unnatural (garbled,
machine-translated, keyboard mash); it is a ranking signal, so besides a fixed
``--max-ppl`` the filter offers ``--ppl-percentile`` (drop the highest P%).

Texts are scored in batches sorted by length (little padding), each prefixed
with the model's BOS (or EOS) token so the first real token is predicted too.
Loading never reaches the network: the path must be a local model folder.
"""

from __future__ import annotations

from pathlib import Path

from thresher.curate.errors import ThresherError


def pick_device(device: str) -> str:
    """``auto`` means CUDA when present, else CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Perplexity:
    """A causal LM and its tokenizer, loaded from a local folder."""

    def __init__(self, path: str | Path, batch_size: int = 8, max_length: int = 1024, device: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not Path(path).is_dir():
            raise ThresherError(f"--ppl-model {path}: not a model folder (a transformers save_pretrained folder)")
        self.device = pick_device(device)
        dtype = torch.bfloat16 if self.device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ThresherError(f"--ppl-model {path}: cannot load a causal language model ({exc})") from None
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.max_length = max_length
        start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
        if start is None:
            raise ThresherError(f"--ppl-model {path}: the tokenizer has neither a BOS nor an EOS token")
        self.start = start
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else start

    def score(self, texts: list[str]) -> list[float | None]:
        """Perplexity of each text; None for an empty one."""
        import torch

        ids = self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=self.max_length - 1)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        result: list[float | None] = [None] * len(texts)
        with torch.inference_mode():
            for offset in range(0, len(order), self.batch_size):
                batch = [i for i in order[offset : offset + self.batch_size] if ids[i]]
                if not batch:
                    continue
                for index, value in zip(batch, self._batch([[self.start, *ids[i]] for i in batch])):
                    result[index] = value
        return result

    def _batch(self, sequences: list[list[int]]) -> list[float]:
        import torch
        import torch.nn.functional as F

        width = max(map(len, sequences))
        input_ids = torch.full((len(sequences), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        logits = self.model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
        targets = input_ids[:, 1:]
        target_mask = mask[:, 1:].float()
        nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none") * target_mask
        mean = nll.sum(dim=1) / target_mask.sum(dim=1)
        return [round(float(v), 4) for v in torch.exp(mean).cpu()]
