"""Reward models: ``thresher train rm`` and the scorer behind ``thresher score``.

A reward model is ``AutoModelForSequenceClassification`` with one output,
built from a decoder (causal LM) or an encoder (BERT-style) checkpoint and
trained full or with LoRA (peft ``SEQ_CLS``: the new score head is fully
trainable, the backbone gets adapters). It runs through the one training loop
(``loop.train``) with one of two objectives:

* pairwise (default): ``-logsigmoid(r_chosen - r_rejected - margin)``, plus
  ``center_coef * (r_chosen + r_rejected)^2`` when ``--center-coef`` is set
  (keeps rewards centred on zero, so scores from different runs compare).
  Chosen and rejected rows go through ONE forward pass (``pairs.pair_batch``).
* regression (``--loss regression``): mean squared error to the scores of
  ``Scored`` records (the 1-5 rating recipe).

Where the score is read. Encoders pool their own way (BERT: the ``[CLS]``
token) and the model's logits are used as they are. Decoders score the
last real token, and transformers finds it as "the rightmost token that is
not ``pad_token_id``": when pad equals EOS (the usual fallback) and a reply
ends in EOS, that is one token early. So for decoders thresher reads the
score head's per-token output and takes the last position the attention
mask marks as real (``last_token_scores``), and the saved model gets a pad
token distinct from every end-of-turn token (``rm_input.distinct_pad``), so
stock ``AutoModelForSequenceClassification`` pools at that same token.

The output folder is a plain Hugging Face model or PEFT adapter plus the
tokenizer and ``reward_model.json`` (the exact input layout, max length,
system prompt), which is all ``RewardScorer`` (or plain transformers code)
needs to score exactly as training did.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from thresher.curate.errors import ThresherError
from thresher.curate.io.writers import write_json
from thresher.schemas import Message
from thresher.train.config import RMConfig, TrainConfig
from thresher.train.inference import ADAPTER_CONFIG, adapter_base
from thresher.train.checkpoint import LoopState
from thresher.train.loop import Artifacts, start_run, train
from thresher.train.metrics import print_run_summary
from thresher.train.pairs import PairEncoder, PairReport, grouped_batches, load_pairs, load_scored, pair_batch, scored_batch
from thresher.train.rm_input import input_layout, is_encoder, load_rm_tokenizer  # noqa: F401 (public here too)

RM_INFO = "reward_model.json"


# ---------------------------------------------------------------- model


def load_reward_model(config: TrainConfig, tokenizer: Any, added_tokens: list[str]) -> Any:
    """A one-output sequence classifier from ``config.model``: full, or LoRA with a trainable head."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    cuda = torch.cuda.is_available()
    dtype = torch.float32
    if config.method == "lora" and cuda:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialized" is the point of a reward model
    try:
        model = AutoModelForSequenceClassification.from_pretrained(config.model, num_labels=1, dtype=dtype)
    finally:
        hf_logging.set_verbosity(verbosity)
    if added_tokens:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if config.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.lora_targets(), task_type="SEQ_CLS",  # SEQ_CLS: the score head is trained in full
        trainable_token_indices=tokenizer.convert_tokens_to_ids(added_tokens) if added_tokens else None,
    )
    with warnings.catch_warnings():  # peft 0.21 calls a transformers API that 5.x deprecates
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(model, lora)
    for param in model.parameters():
        if param.requires_grad:  # the head copy peft trains follows the (half-precision on GPU) base: train it in fp32
            param.data = param.data.float()
    if not any(p.requires_grad for n, p in model.named_parameters() if "score" in n or "classifier" in n):
        raise ThresherError(f"{type(model.get_base_model()).__name__}: could not make the score head trainable")
    return model


def _classifier(model: Any) -> Any:
    """The transformers model under DDP and peft wrappers."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def last_token_scores(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """One reward per row: the decoder's score at the last attended token, the encoder's pooled logit.

    Decoder heads are called ``score`` across transformers; a forward hook
    keeps their per-token output, read at the last position the attention
    mask marks (right padding), never "the last token that is not pad".
    """
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in batch}
    head = getattr(_classifier(model), "score", None)
    if head is None:
        return model(**inputs).logits[:, 0].float()
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        model(**inputs, use_cache=False)
    finally:
        hook.remove()
    per_token = captured[-1][..., 0].float()
    mask = batch["attention_mask"]
    positions = torch.arange(mask.size(1), device=mask.device)
    last = (positions * mask).argmax(-1)
    return per_token.gather(1, last.unsqueeze(1)).squeeze(1)


# ---------------------------------------------------------------- objectives


class PairwiseObjective:
    """Bradley-Terry loss ``-logsigmoid(r_c - r_r - margin)`` (+ centering); unit: pairs."""

    unit = "pairs"

    def __init__(self, center_coef: float = 0.0) -> None:
        self.center_coef = center_coef

    def count(self, batch: dict[str, Any]) -> int:
        return int(batch["margin"].numel())

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rewards = last_token_scores(model, batch)
        chosen, rejected = rewards.chunk(2)
        losses = -F.logsigmoid(chosen - rejected - batch["margin"])
        if self.center_coef:
            losses = losses + self.center_coef * (chosen + rejected) ** 2
        detached = (chosen.detach(), rejected.detach())
        return losses.sum(), reward_sums(*detached)

    def finalize(self, means: dict[str, float]) -> dict[str, float]:
        return finalize_rewards(means)


def reward_sums(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-pair sums the loop averages: accuracy, margin, and the moments of all rewards."""
    return {
        "accuracy": (chosen > rejected).float().sum(),
        "margin": (chosen - rejected).sum(),
        "reward_mean": ((chosen + rejected) / 2).sum(),
        "reward_sq": ((chosen**2 + rejected**2) / 2).sum(),
    }


def finalize_rewards(means: dict[str, float]) -> dict[str, float]:
    """Replace the mean square by the spread (standard deviation) of the rewards."""
    out = {key: value for key, value in means.items() if key != "reward_sq"}
    if "reward_sq" in means:
        out["reward_std"] = math.sqrt(max(means["reward_sq"] - means["reward_mean"] ** 2, 0.0))
    return out


class RegressionObjective:
    """Mean squared error to the target score; unit: scored responses."""

    unit = "responses"

    def count(self, batch: dict[str, Any]) -> int:
        return int(batch["score"].numel())

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rewards = last_token_scores(model, batch)
        detached = rewards.detach()
        return ((rewards - batch["score"]) ** 2).sum(), {
            "abs_error": (detached - batch["score"]).abs().sum(),
            "reward_mean": detached.sum(),
            "reward_sq": (detached**2).sum(),
        }

    def finalize(self, means: dict[str, float]) -> dict[str, float]:
        return finalize_rewards(means)


# ---------------------------------------------------------------- the run


def print_report(name: str, report: PairReport, eval_report: PairReport | None, held: int, console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"{name} data")
    for column in ("", "records", "examples", "tokens", "truncated", "removed"):
        table.add_column(column, justify="left" if not column else "right")
    for label, item in (("train", report), ("eval", eval_report)):
        if item is not None:
            removed = ", ".join(f"{k} {v}" for k, v in sorted(item.removed.items())) or "0"
            table.add_row(label, str(item.records), str(item.examples), str(item.tokens), str(item.truncated), removed)
    console.print(table)
    if held:
        console.print(f"held out {held} examples for evaluation")


def run_rm(config: RMConfig, console: Any = None) -> LoopState:
    """``thresher train rm``: data report, model, loop; returns the loop's final state."""
    from rich.console import Console

    from thresher.train.data import split_eval
    console = console or Console()
    if config.method == "qlora":
        raise ThresherError("--method qlora is not supported for reward models; use lora or full")
    if config.packing:
        raise ThresherError("--packing is for SFT; reward-model batches are length-grouped instead")
    out = Path(config.output)
    accelerator = start_run(config)

    tokenizer, layout, added = load_rm_tokenizer(config.model, config.chat_template)
    encoder = PairEncoder(tokenizer, config.max_len, layout, config.system)
    pad = tokenizer.pad_token_id
    if config.loss == "pairwise":
        def load(paths: Sequence[str], name: str) -> tuple[list[Any], PairReport]:
            return load_pairs(paths, encoder, out, name, config.margin_field)

        def collate(items: list[Any]) -> dict[str, Any]:
            return pair_batch(items, encoder, pad)

        objective: Any = PairwiseObjective(config.center_coef)
    else:
        if config.margin_field:
            raise ThresherError("--margin-field applies to --loss pairwise")

        def load(paths: Sequence[str], name: str) -> tuple[list[Any], PairReport]:
            return load_scored(paths, encoder, out, name)

        def collate(items: list[Any]) -> dict[str, Any]:
            return scored_batch(items, encoder, pad)

        objective = RegressionObjective()
    examples, report = load(config.data, "data")
    eval_report = None
    if config.eval_data:
        held, eval_report = load(config.eval_data, "eval")
    else:
        examples, held = split_eval(examples, config.val_size, config.seed)
    if not examples:
        raise ThresherError(f"no usable preference records in {', '.join(config.data)} (see {out / 'data.removed.jsonl'})")
    info = {"layout": layout, "max_len": config.max_len, "system": config.system, "loss": config.loss,
            "input": input_layout(tokenizer, layout, config.system)}
    if accelerator.is_main_process:
        print_report("reward model", report, eval_report, len(held) if eval_report is None else 0, console)
        config.save(out)

    model = load_reward_model(config, tokenizer, added)

    def save_extras(folder: Path) -> None:
        tokenizer.save_pretrained(folder)
        write_json(folder / RM_INFO, info)

    eval_set = grouped_batches(held, config.batch_size, 0, collate) if held else ()
    state = train(config, model, objective, lambda epoch: grouped_batches(examples, config.batch_size,
                                                                          config.seed + epoch, collate),
                  eval_set, accelerator, Artifacts(save_extras))
    if accelerator.is_main_process:
        print_run_summary(console, state.log, out, "reward " + ("model" if config.method == "full" else "adapter"))
    return state


# ---------------------------------------------------------------- scoring


class RewardScorer:
    """A trained reward model (``thresher train rm`` output) that scores (prompt, reply) pairs in batches."""

    def __init__(self, model_dir: str | Path, device: str | None = None) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from thresher.train.model_path import resolve_model

        folder = Path(resolve_model(model_dir))
        if not (folder / RM_INFO).exists():
            raise ThresherError(f"{folder} is not a thresher reward model (no {RM_INFO}); train one with thresher train rm")
        info = json.loads((folder / RM_INFO).read_text(encoding="utf-8"))
        hf_logging.disable_progress_bar()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        adapter = (folder / ADAPTER_CONFIG).exists()
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # an adapter's base has a fresh head; the adapter replaces it
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                adapter_base(folder) if adapter else folder, num_labels=1, dtype=torch.float32)
        finally:
            hf_logging.set_verbosity(verbosity)
        if model.get_input_embeddings().num_embeddings < len(self.tokenizer):
            model.resize_token_embeddings(len(self.tokenizer))
        model.config.pad_token_id = self.tokenizer.pad_token_id
        if adapter:
            from peft import PeftModel

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                model = PeftModel.from_pretrained(model, str(folder))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.encoder = PairEncoder(self.tokenizer, info["max_len"], info["layout"], info.get("system"))

    @torch.no_grad()
    def score(self, items: Sequence[tuple[Sequence[Message], str]], batch_size: int = 16) -> list[float]:
        """The reward of each (prompt messages, reply), in input order; batched by length."""
        from thresher.train.pairs import pad_rows

        rows = []
        for prompt, reply in items:
            prompt_ids, (reply_ids,), _ = self.encoder.encode(prompt, [reply])
            rows.append(self.encoder.join(prompt_ids, reply_ids))
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
        scores = [0.0] * len(rows)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = pad_rows([rows[i] for i in chunk], self.tokenizer.pad_token_id,
                             with_types=self.encoder.layout == "pair")
            values = last_token_scores(self.model, {k: v.to(self.device) for k, v in batch.items()})
            for index, value in zip(chunk, values.tolist()):
                scores[index] = value
        return scores


def reply_of(record: Any) -> tuple[list[Message], str]:
    """(prompt, reply) of a record whose last turn is the assistant's (``Dialogue`` or ``QA``)."""
    from thresher.schemas import QA, Dialogue

    if isinstance(record, QA):
        record = record.to_dialogue()
    if not isinstance(record, Dialogue):
        raise ValueError(f"a {record.kind} record has no single reply to score")
    if len(record.messages) < 2 or record.messages[-1].role != "assistant":
        raise ValueError("the dialogue does not end with an assistant reply")
    return list(record.messages[:-1]), record.messages[-1].content


def score_records(model_dir: str | Path | RewardScorer, records: Sequence[Any], batch_size: int = 16) -> list[float]:
    """The reward of each record's final assistant reply (``Dialogue`` / ``QA`` records), in order.

    This is what ``thresher filter --rm-model`` calls; pass a ``RewardScorer``
    to reuse a loaded model across calls.
    """
    scorer = model_dir if isinstance(model_dir, RewardScorer) else RewardScorer(model_dir)
    return scorer.score([reply_of(record) for record in records], batch_size)
